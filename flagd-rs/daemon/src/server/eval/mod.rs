//! The evaluation port (8013).
