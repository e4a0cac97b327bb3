//! Checkpoints: signed notes (C2SP signed-note / tlog-checkpoint) (being written).
