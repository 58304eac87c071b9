//! Every shape of the derive, in a crate that denies warnings, clippy's
//! default lints and its pedantic ones.
#![deny(warnings, clippy::all, clippy::pedantic)]
#![allow(dead_code)]

use std::fmt::Debug;
use std::time::Duration;

use buttress::Classify;

#[derive(Debug, Classify)]
#[classify(default = permanent)]
pub enum Public<E: Debug> {
    #[classify(transient)]
    A,
    #[classify(transient)]
    B(u8),
    #[classify(rate_limited)]
    C(#[retry_after] Duration),
    #[classify(rate_limited)]
    D {
        #[retry_after]
        wait: Option<Duration>,
    },
    #[classify(delegate)]
    E(E),
    #[classify(delegate)]
    F {
        source: std::io::Error,
    },
    #[deprecated(note = "use A")]
    #[classify(outcome_unknown)]
    G,
    H,
}

#[derive(Debug, Classify)]
#[classify(delegate)]
pub struct Wrapper(Private);

#[derive(Debug, Classify)]
enum Private {
    #[classify(transient)]
    A,
}

#[derive(Debug, Classify)]
#[classify(permanent)]
pub struct Plain;

#[derive(Debug, Classify)]
pub enum Empty {}

fn main() {}
