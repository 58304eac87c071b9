use buttress::resilient;

#[derive(Debug)]
struct PlainError;

impl From<buttress::Error> for PlainError {
    fn from(_: buttress::Error) -> Self {
        PlainError
    }
}

#[resilient]
async fn call() -> Result<u32, PlainError> {
    Ok(1)
}

fn main() {}
