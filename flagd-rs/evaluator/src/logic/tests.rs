//! Table-driven tests of the rule engine.
