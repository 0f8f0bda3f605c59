//! Pure rules of the write side: no I/O.

pub mod follow;
pub mod validation;
