//! What the broker sends (`RunTask`) and what the executor answers
//! (`Outcome`): wire types, defined with the broker↔executor messages.

pub use latchgate_ipc::messages::broker_executor::{
    FailureClass, FsObservation, HttpObservation, IoObservation, Outcome, OutcomeResult, RunTask,
};
