//! The generated code names only `::buttress::__private_<version>` and `::core`
//! paths, so shadowed prelude names and look-alike items do not disturb it.
#![allow(dead_code, non_camel_case_types)]

use buttress::Classify as Derive;

type Option = ();
type Result = ();
struct Some;
struct None;
struct Duration;
struct ErrorClass;
trait Classify {}
mod buttress_private {}
mod core {}

#[derive(Debug, Derive)]
enum Shadowed {
    #[classify(rate_limited)]
    Throttled(#[retry_after] std::time::Duration),
    #[classify(transient)]
    Busy { __buttress_field: u8 },
    #[classify(delegate)]
    Io(std::io::Error),
    #[classify(delegate)]
    Named { __buttress_field: std::io::Error },
}

fn main() {
    let _ = <Shadowed as buttress::Classify>::class(&Shadowed::Busy {
        __buttress_field: 1,
    });
}
