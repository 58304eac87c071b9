//! The derive input as written: every `#[classify]` and `#[retry_after]`
//! parsed into typed values that keep their syn nodes for spans. Nothing is
//! judged here beyond syntax; `check` decides what is allowed.

use std::fmt;

use proc_macro2::Span;
use syn::ext::IdentExt;
use syn::parse::{Lookahead1, Parse, ParseStream};
use syn::{Attribute, Data, DeriveInput, Fields, Generics, Ident, Member, Meta, Token, Type};

use crate::errors::Errors;

/// The one table of the attribute's words: each class keyword and its
/// `ErrorClass` variant, then `delegate` and `default`. From it come the
/// keyword tokens, [`Class`], the marker parser (whose lookahead writes the
/// "expected one of …" messages) and [`MARKERS`] for hints.
macro_rules! keywords {
    ($($class_kw:ident => $class:ident,)*) => {
        pub(crate) mod kw {
            $(syn::custom_keyword!($class_kw);)*
            syn::custom_keyword!(delegate);
            syn::custom_keyword!(default);
        }

        /// One of the four `buttress::ErrorClass` variants.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub(crate) enum Class {
            $($class,)*
        }

        impl Class {
            /// The word that names this class in `#[classify(…)]`.
            pub(crate) const fn keyword(self) -> &'static str {
                match self {
                    $(Self::$class => stringify!($class_kw),)*
                }
            }

            /// The name of the matching `buttress::ErrorClass` variant.
            pub(crate) const fn variant_name(self) -> &'static str {
                match self {
                    $(Self::$class => stringify!($class),)*
                }
            }
        }

        /// Every marker a variant may carry, as written in hints:
        /// `transient | rate_limited | … | delegate`.
        pub(crate) const MARKERS: &str =
            concat!($(stringify!($class_kw), " | ",)* "delegate");

        impl Marker {
            fn parse_with(input: ParseStream<'_>, lookahead: Lookahead1<'_>) -> syn::Result<Self> {
                $(
                    if lookahead.peek(kw::$class_kw) {
                        let token: kw::$class_kw = input.parse()?;
                        return Ok(Self { kind: MarkerKind::Class(Class::$class), span: token.span });
                    }
                )*
                if lookahead.peek(kw::delegate) {
                    let token: kw::delegate = input.parse()?;
                    return Ok(Self { kind: MarkerKind::Delegate, span: token.span });
                }
                Err(unknown_marker(input, lookahead))
            }
        }
    };
}

keywords! {
    transient => Transient,
    rate_limited => RateLimited,
    outcome_unknown => OutcomeUnknown,
    permanent => Permanent,
}

/// What a `#[classify(…)]` word says about a variant or struct.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MarkerKind {
    Class(Class),
    /// The single field decides.
    Delegate,
}

impl fmt::Display for MarkerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Class(class) => f.write_str(class.keyword()),
            Self::Delegate => f.write_str("delegate"),
        }
    }
}

/// One class word (or `delegate`) and where it was written.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Marker {
    pub(crate) kind: MarkerKind,
    pub(crate) span: Span,
}

impl Parse for Marker {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        Self::parse_with(input, input.lookahead1())
    }
}

/// The error for a word that is no marker: names it, lists the valid ones
/// (the lookahead's "expected one of …"), and guesses at a near miss.
fn unknown_marker(input: ParseStream<'_>, lookahead: Lookahead1<'_>) -> syn::Error {
    let expected = lookahead.error();
    let Ok(word) = input.fork().call(Ident::parse_any) else {
        return expected;
    };
    if word == "default" {
        return syn::Error::new(
            word.span(),
            format!(
                "`default = …` belongs on the enum, where it covers unmarked variants; here, write one of `{MARKERS}`"
            ),
        );
    }
    let hint = near_miss(&word.to_string())
        .map(|suggestion| format!(" (did you mean `{suggestion}`?)"))
        .unwrap_or_default();
    syn::Error::new(
        word.span(),
        format!("unknown class `{word}`{hint}; {expected}"),
    )
}

/// The classes a default may name: every marker but `delegate`.
pub(crate) fn classes() -> &'static str {
    MARKERS
        .rsplit_once(" | ")
        .map_or(MARKERS, |(classes, _)| classes)
}

/// A marker spelled with other case or separators (`RateLimited`,
/// `ratelimited`).
fn near_miss(word: &str) -> Option<&'static str> {
    let squash = |w: &str| w.replace('_', "").to_ascii_lowercase();
    let word = squash(word);
    MARKERS.split(" | ").find(|marker| squash(marker) == word)
}

/// The derive input: the type, and its `#[classify]` and `#[retry_after]`
/// attributes wherever they were written.
pub(crate) struct Input<'a> {
    pub(crate) ident: &'a Ident,
    pub(crate) generics: &'a Generics,
    pub(crate) shape: Shape<'a>,
}

pub(crate) enum Shape<'a> {
    Enum {
        /// `#[classify(default = …)]` on the enum.
        attrs: Vec<EnumAttr>,
        /// `#[retry_after]` on the enum itself (misplaced).
        stray_retry_after: Vec<&'a Attribute>,
        variants: Vec<Body<'a>>,
    },
    /// A struct carries its class like a variant does.
    Struct(Body<'a>),
    Union(&'a Token![union]),
}

/// A variant, or a struct: what it is marked with, and its fields.
pub(crate) struct Body<'a> {
    pub(crate) ident: &'a Ident,
    pub(crate) classify: Vec<ClassifyAttr<'a>>,
    /// `#[retry_after]` on the variant or struct itself (misplaced).
    pub(crate) stray_retry_after: Vec<&'a Attribute>,
    pub(crate) fields: Vec<Field<'a>>,
}

pub(crate) struct Field<'a> {
    /// The field's name, or its index in a tuple.
    pub(crate) member: Member,
    pub(crate) ty: &'a Type,
    pub(crate) retry_after: Vec<&'a Attribute>,
    /// `#[classify]` on a field (misplaced).
    pub(crate) classify: Vec<&'a Attribute>,
}

/// `#[classify(…)]` on a variant or struct.
pub(crate) struct ClassifyAttr<'a> {
    pub(crate) attr: &'a Attribute,
    /// The markers in writing order; `check` accepts exactly one. Empty when
    /// the attribute did not parse (that error is already reported).
    pub(crate) markers: Vec<Marker>,
}

/// `#[classify(…)]` on an enum.
pub(crate) struct EnumAttr {
    /// Empty when the attribute did not parse (that error is already
    /// reported).
    pub(crate) args: Vec<EnumArg>,
}

pub(crate) enum EnumArg {
    /// `default = <class>` (`check` refuses `delegate`).
    Default { keyword: kw::default, value: Marker },
    /// A bare marker, which belongs on variants (`check` says so).
    Marker(Marker),
}

impl Parse for EnumArg {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let lookahead = input.lookahead1();
        if lookahead.peek(kw::default) {
            let keyword = input.parse()?;
            input.parse::<Token![=]>()?;
            let value = input.parse()?;
            Ok(Self::Default { keyword, value })
        } else {
            Marker::parse_with(input, lookahead).map(Self::Marker)
        }
    }
}

/// `a, b, c` with an optional trailing comma, and at least one item (so an
/// empty `#[classify()]` gets the "expected one of …" message).
fn comma_list<T: Parse>(input: ParseStream<'_>) -> syn::Result<Vec<T>> {
    let mut items = vec![input.parse()?];
    while !input.is_empty() {
        if !input.peek(Token![,]) {
            return Err(input.error("expected `)`: `#[classify(…)]` holds a single class"));
        }
        input.parse::<Token![,]>()?;
        if input.is_empty() {
            break;
        }
        items.push(input.parse()?);
    }
    Ok(items)
}

impl<'a> Input<'a> {
    /// Parse every helper attribute of `input`. Syntax errors go to `errors`;
    /// the attribute then counts as present but empty, so `check` adds no
    /// follow-on errors about it.
    pub(crate) fn parse(input: &'a DeriveInput, errors: &mut Errors) -> Self {
        let shape = match &input.data {
            Data::Enum(data) => Shape::Enum {
                attrs: enum_attrs(&input.attrs, errors),
                stray_retry_after: retry_after_attrs(&input.attrs),
                variants: data
                    .variants
                    .iter()
                    .map(|variant| {
                        Body::parse(&variant.ident, &variant.attrs, &variant.fields, errors)
                    })
                    .collect(),
            },
            Data::Struct(data) => Shape::Struct(Body::parse(
                &input.ident,
                &input.attrs,
                &data.fields,
                errors,
            )),
            Data::Union(data) => Shape::Union(&data.union_token),
        };
        Self {
            ident: &input.ident,
            generics: &input.generics,
            shape,
        }
    }
}

impl<'a> Body<'a> {
    fn parse(
        ident: &'a Ident,
        attrs: &'a [Attribute],
        fields: &'a Fields,
        errors: &mut Errors,
    ) -> Self {
        Self {
            ident,
            classify: classify_attrs(attrs)
                .map(|attr| ClassifyAttr {
                    attr,
                    markers: parse_args(attr, &format!("#[classify({MARKERS})]"), errors),
                })
                .collect(),
            stray_retry_after: retry_after_attrs(attrs),
            fields: fields
                .iter()
                .enumerate()
                .map(|(index, field)| Field {
                    member: field
                        .ident
                        .clone()
                        .map_or_else(|| Member::Unnamed(index.into()), Member::Named),
                    ty: &field.ty,
                    retry_after: retry_after_attrs(&field.attrs),
                    classify: classify_attrs(&field.attrs).collect(),
                })
                .collect(),
        }
    }
}

fn enum_attrs(attrs: &[Attribute], errors: &mut Errors) -> Vec<EnumAttr> {
    classify_attrs(attrs)
        .map(|attr| EnumAttr {
            args: parse_args(attr, "#[classify(default = permanent)]", errors),
        })
        .collect()
}

/// The arguments of a `#[classify(…)]`, or an empty list after reporting
/// why they did not parse. `example` is the form to suggest for a bare
/// `#[classify]`.
fn parse_args<T: Parse>(attr: &Attribute, example: &str, errors: &mut Errors) -> Vec<T> {
    let parsed = match &attr.meta {
        Meta::Path(path) => Err(syn::Error::new_spanned(
            path,
            format!("`#[classify]` needs a class in parentheses: write `{example}`"),
        )),
        Meta::List(_) | Meta::NameValue(_) => attr.parse_args_with(comma_list),
    };
    parsed.unwrap_or_else(|err| {
        errors.push(err);
        Vec::new()
    })
}

fn classify_attrs(attrs: &[Attribute]) -> impl Iterator<Item = &Attribute> {
    attrs.iter().filter(|attr| attr.path().is_ident("classify"))
}

fn retry_after_attrs(attrs: &[Attribute]) -> Vec<&Attribute> {
    attrs
        .iter()
        .filter(|attr| attr.path().is_ident("retry_after"))
        .collect()
}
