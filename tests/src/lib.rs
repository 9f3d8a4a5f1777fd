//! Shared helpers of the privileged end-to-end tests.
pub mod netns;
pub mod expected;
pub mod test_run;
