//! Measurements for Portcullis; each binary in `src/bin` is one measurement (see bench/README.md).
