//! Shared helpers of the privileged end-to-end tests.
pub mod agent;
pub mod expected;
pub mod knot;
pub mod netns;
pub mod rng;
pub mod test_run;
