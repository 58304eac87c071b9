use buttress::Classify;

#[derive(Classify)]
union Raw {
    code: u32,
    flags: f32,
}

fn main() {}
