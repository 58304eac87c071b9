//! Validation: turns the model as written into a [`Plan`] that `expand`
//! can generate from without further questions. Every error is collected
//! (serde's `Ctxt` style), so one build reports every mistake at once.

use quote::ToTokens;
use syn::{Attribute, Generics, Ident, Member, Meta};

use super::model::{
    self, Body, Class, EnumArg, EnumAttr, Field, Input, MarkerKind, Shape, MARKERS,
};
use crate::errors::Errors;

/// What to generate: a valid derive, with one arm per variant.
pub(crate) struct Plan<'a> {
    pub(crate) ident: &'a Ident,
    pub(crate) generics: &'a Generics,
    pub(crate) shape: PlanShape<'a>,
}

pub(crate) enum PlanShape<'a> {
    Enum(Vec<Arm<'a>>),
    Struct(Arm<'a>),
}

/// How one variant (or the struct) answers `class()` and `retry_after()`.
pub(crate) struct Arm<'a> {
    pub(crate) ident: &'a Ident,
    pub(crate) rule: Rule<'a>,
    /// The `#[retry_after]` field; never set for `Rule::Delegate`, which
    /// forwards `retry_after()` too.
    pub(crate) retry_after: Option<&'a Field<'a>>,
}

#[derive(Clone, Copy)]
pub(crate) enum Rule<'a> {
    Class(Class),
    /// The single field decides both the class and the wait.
    Delegate(&'a Field<'a>),
}

/// Check `input`, adding every problem to `errors`. Returns the plan when
/// the input is valid; `None` only after at least one error was added.
pub(crate) fn check<'a>(input: &'a Input<'a>, errors: &mut Errors) -> Option<Plan<'a>> {
    let shape = match &input.shape {
        Shape::Enum {
            attrs,
            stray_retry_after,
            variants,
        } => {
            misplaced_retry_after(stray_retry_after, "the enum", errors);
            let default = enum_default(attrs, errors);
            let arms: Vec<_> = variants
                .iter()
                .map(|variant| arm(variant, Owner::Variant, default, errors))
                .collect();
            PlanShape::Enum(arms.into_iter().collect::<Option<_>>()?)
        }
        Shape::Struct(body) => PlanShape::Struct(arm(body, Owner::Struct, Fallback::None, errors)?),
        Shape::Union(token) => {
            errors.on(
                token,
                "`#[derive(Classify)]` does not support unions, since nothing tells which field is set; \
                 derive it on an enum or a struct, or implement `buttress::Classify` by hand",
            );
            return None;
        }
    };
    Some(Plan {
        ident: input.ident,
        generics: input.generics,
        shape,
    })
}

/// What unmarked variants get.
#[derive(Clone, Copy)]
enum Fallback {
    None,
    Class(Class),
    /// The enum's attribute was wrong (already reported): say nothing more
    /// about unmarked variants.
    Unknown,
}

fn enum_default(attrs: &[EnumAttr], errors: &mut Errors) -> Fallback {
    let mut default = Fallback::None;
    for attr in attrs {
        if attr.args.is_empty() {
            default = Fallback::Unknown;
        }
        for arg in &attr.args {
            match arg {
                EnumArg::Default { keyword, value } => match (value.kind, default) {
                    (MarkerKind::Delegate, _) => {
                        errors.at(
                            value.span,
                            format!(
                                "`default = delegate` is not allowed: a default covers variants of any shape, \
                                 but `delegate` needs the variant's single field; write `default = {}`, \
                                 and mark delegating variants `#[classify(delegate)]`",
                                model::classes(),
                            ),
                        );
                        default = Fallback::Unknown;
                    }
                    (MarkerKind::Class(class), Fallback::None) => default = Fallback::Class(class),
                    (MarkerKind::Class(_), Fallback::Class(first)) => errors.at(
                        keyword.span,
                        format!(
                            "the enum already has `default = {}`; remove this second default",
                            first.keyword(),
                        ),
                    ),
                    (MarkerKind::Class(_), Fallback::Unknown) => {}
                },
                EnumArg::Marker(marker) => {
                    let message = match marker.kind {
                        MarkerKind::Class(class) => format!(
                            "`#[classify({class})]` on the enum: write `#[classify(default = {class})]` \
                             to cover the unmarked variants, or put `#[classify({class})]` on each variant",
                            class = class.keyword(),
                        ),
                        MarkerKind::Delegate => "`#[classify(delegate)]` goes on a variant with a single field, \
                                                 which then decides; not on the enum"
                            .to_owned(),
                    };
                    errors.at(marker.span, message);
                    default = Fallback::Unknown;
                }
            }
        }
    }
    default
}

#[derive(Clone, Copy)]
enum Owner {
    Variant,
    Struct,
}

impl Owner {
    const fn this(self) -> &'static str {
        match self {
            Self::Variant => "this variant",
            Self::Struct => "this struct",
        }
    }
}

fn arm<'a>(
    body: &'a Body<'a>,
    owner: Owner,
    default: Fallback,
    errors: &mut Errors,
) -> Option<Arm<'a>> {
    misplaced_retry_after(
        &body.stray_retry_after,
        match owner {
            Owner::Variant => "a variant",
            Owner::Struct => "the struct",
        },
        errors,
    );
    for field in &body.fields {
        for attr in &field.classify {
            let hint = match owner {
                Owner::Variant => {
                    "`#[classify]` goes on a variant (or on the enum, as `default = …`), not on a field; \
                     to let this field decide the class, put `#[classify(delegate)]` on its variant"
                }
                Owner::Struct => {
                    "`#[classify]` goes on the struct, not on a field; \
                     to let this field decide the class, put `#[classify(delegate)]` on the struct"
                }
            };
            errors.on(attr, hint);
        }
    }
    let rule = rule(body, owner, default, errors);
    let retry_after = retry_after_field(body, owner, errors);
    match (rule?, retry_after) {
        (Rule::Delegate(_), Some((_, attr))) => {
            errors.on(
                attr,
                format!(
                    "`#[retry_after]` on the field of a `delegate` {}: the delegated error already reports \
                     its wait through its own `Classify::retry_after`; remove `#[retry_after]`",
                    match owner {
                        Owner::Variant => "variant",
                        Owner::Struct => "struct",
                    },
                ),
            );
            None
        }
        (rule, retry_after) => Some(Arm {
            ident: body.ident,
            rule,
            retry_after: retry_after.map(|(field, _)| field),
        }),
    }
}

/// The rule from the body's `#[classify]`, or the enum's default.
fn rule<'a>(
    body: &'a Body<'a>,
    owner: Owner,
    default: Fallback,
    errors: &mut Errors,
) -> Option<Rule<'a>> {
    let ident = body.ident;
    let mut chosen = None;
    for (index, attr) in body.classify.iter().enumerate() {
        if index > 0 {
            errors.on(
                attr.attr,
                format!(
                    "second `#[classify]` on `{ident}`: {} has exactly one class; remove this attribute",
                    owner.this(),
                ),
            );
            continue;
        }
        let Some((first, extras)) = attr.markers.split_first() else {
            // Did not parse; already reported.
            return None;
        };
        for extra in extras {
            errors.at(
                extra.span,
                format!(
                    "`{ident}` is already `{}`, and `#[classify(…)]` takes one class; remove `{}`",
                    first.kind, extra.kind,
                ),
            );
        }
        chosen = Some(*first);
    }
    match chosen {
        Some(marker) => match marker.kind {
            MarkerKind::Class(class) => Some(Rule::Class(class)),
            MarkerKind::Delegate => {
                if let [field] = body.fields.as_slice() {
                    return Some(Rule::Delegate(field));
                }
                let message = if body.fields.is_empty() {
                    format!(
                        "`delegate` forwards to the single field of {this}, but `{ident}` has no fields; \
                         give it a class instead: `#[classify({classes})]`",
                        this = owner.this(),
                        classes = model::classes(),
                    )
                } else {
                    format!(
                        "`delegate` forwards to the single field of {this}, but `{ident}` has {count} fields; \
                         keep only the inner error as a field, or give it a class: `#[classify({classes})]`",
                        this = owner.this(),
                        count = body.fields.len(),
                        classes = model::classes(),
                    )
                };
                errors.at(marker.span, message);
                None
            }
        },
        None => match default {
            Fallback::Class(class) => Some(Rule::Class(class)),
            Fallback::Unknown => None,
            Fallback::None => {
                let message = match owner {
                    Owner::Variant => format!(
                        "`{ident}` has no class: add `#[classify({MARKERS})]` to this variant, \
                         or `#[classify(default = permanent)]` to the enum"
                    ),
                    Owner::Struct => format!(
                        "`{ident}` has no class: add `#[classify({MARKERS})]` to this struct"
                    ),
                };
                errors.on(ident, message);
                None
            }
        },
    }
}

/// The one field marked `#[retry_after]`, with its attribute.
fn retry_after_field<'a>(
    body: &'a Body<'a>,
    owner: Owner,
    errors: &mut Errors,
) -> Option<(&'a Field<'a>, &'a Attribute)> {
    let mut found: Option<(&Field<'_>, &Attribute)> = None;
    for field in &body.fields {
        for (index, attr) in field.retry_after.iter().copied().enumerate() {
            retry_after_is_bare(attr, errors);
            if index > 0 {
                errors.on(attr, "duplicate `#[retry_after]` on this field; remove one");
            } else if let Some((first, _)) = found {
                errors.on(
                    attr,
                    format!(
                        "`#[retry_after]` is already on {} of `{}`; {} has one wait, so keep `#[retry_after]` on one field",
                        describe(&first.member),
                        body.ident,
                        owner.this(),
                    ),
                );
            } else {
                found = Some((field, attr));
            }
        }
    }
    found
}

fn retry_after_is_bare(attr: &Attribute, errors: &mut Errors) {
    const MESSAGE: &str =
        "`#[retry_after]` takes no arguments: write it bare, on the field holding \
                           the wait (a `Duration` or `Option<Duration>`)";
    match &attr.meta {
        Meta::Path(_) => {}
        Meta::List(list) => errors.at(list.delimiter.span().join(), MESSAGE),
        Meta::NameValue(name_value) => {
            let mut args = name_value.eq_token.to_token_stream();
            name_value.value.to_tokens(&mut args);
            errors.on(args, MESSAGE);
        }
    }
}

fn misplaced_retry_after(attrs: &[&Attribute], place: &str, errors: &mut Errors) {
    for attr in attrs {
        errors.on(
            attr,
            format!(
                "`#[retry_after]` goes on a field (the one holding the wait, a `Duration` or \
                 `Option<Duration>`), not on {place}"
            ),
        );
    }
}

fn describe(member: &Member) -> String {
    match member {
        Member::Named(ident) => format!("field `{ident}`"),
        Member::Unnamed(index) => format!("field {}", index.index),
    }
}
