//! Tests of the loop detector.
