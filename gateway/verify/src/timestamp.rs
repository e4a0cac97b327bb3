//! RFC 3161 signed timestamps (being written).
