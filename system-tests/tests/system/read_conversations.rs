//! The conversations queries of the contract, end to end on the real stack.
