//! Generics, where clauses, lifetimes and const parameters are kept; only
//! delegated and `#[retry_after]` fields that involve a type parameter get
//! a bound.
use std::fmt::Debug;
use std::marker::PhantomData;
use std::time::Duration;

use buttress::{Classify, ErrorClass};

trait Provider {
    type Error: Debug;
}

#[derive(Debug, Classify)]
enum CallError<'a, P, E, W, const N: usize>
where
    P: Provider,
    E: Debug + ?Sized,
{
    #[classify(delegate)]
    Provider(P::Error),
    #[classify(delegate)]
    Boxed { source: Box<E> },
    #[classify(rate_limited)]
    Throttled(#[retry_after] W, [u8; N]),
    #[classify(permanent)]
    Rejected {
        reason: &'a str,
        marker: PhantomData<P>,
    },
}

#[derive(Debug, Classify)]
#[classify(delegate)]
struct Wrapped<T: Debug>(T);

#[derive(Debug)]
struct Http;

impl Provider for Http {
    type Error = std::io::Error;
}

fn assert_classify<T: Classify>(value: &T) -> ErrorClass {
    value.class()
}

fn main() {
    type E<'a> = CallError<'a, Http, std::io::Error, Option<Duration>, 2>;
    let error: E<'_> = CallError::Throttled(None, [0; 2]);
    assert_eq!(assert_classify(&error), ErrorClass::RateLimited);
    let _ = assert_classify(&Wrapped(std::io::Error::other("x")));
}
