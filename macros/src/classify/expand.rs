//! Generation: the `Classify` impl of a checked [`Plan`], and the stand-in
//! impl emitted next to errors. Generated code names only
//! `::buttress::__private_<version>` and `::core` paths.

use proc_macro2::{Ident, TokenStream, TokenTree};
use quote::{quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::{DeriveInput, Generics, Type};

use super::check::{Arm, Plan, PlanShape, Rule};
use super::model::{Class, Field};

/// `impl Classify for T`: `class()` always, `retry_after()` only when some
/// variant can report a wait (otherwise the trait's `None` default stands).
pub(crate) fn classify_impl(plan: &Plan<'_>) -> TokenStream {
    let rt = crate::runtime_path();
    let ident = plan.ident;
    let generics = with_bounds(plan);
    let (impl_generics, ty_generics, where_clause) = generics.split_for_impl();
    let class = class_body(plan);
    let retry_after = retry_after_body(plan).map(|body| {
        quote! {
            fn retry_after(&self) -> #rt::Option<#rt::Duration> {
                #body
            }
        }
    });
    quote! {
        #[automatically_derived]
        impl #impl_generics #rt::Classify for #ident #ty_generics #where_clause {
            fn class(&self) -> #rt::ErrorClass {
                #class
            }
            #retry_after
        }
    }
}

/// Emitted with the errors, so that the type still implements `Classify`
/// and its uses elsewhere add no follow-on errors (thiserror does the same).
pub(crate) fn fallback(input: &DeriveInput) -> TokenStream {
    let rt = crate::runtime_path();
    let ident = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    quote! {
        #[automatically_derived]
        impl #impl_generics #rt::Classify for #ident #ty_generics #where_clause {
            fn class(&self) -> #rt::ErrorClass {
                ::core::unreachable!()
            }
        }
    }
}

fn class_body(plan: &Plan<'_>) -> TokenStream {
    let rt = crate::runtime_path();
    answer_per_arm(plan, |arm| match arm.rule {
        Rule::Class(class) => (None, error_class(class)),
        Rule::Delegate(field) => (
            Some(field),
            quote_spanned! {field.ty.span()=>
                #rt::Classify::class(__buttress_field)
            },
        ),
    })
}

fn retry_after_body(plan: &Plan<'_>) -> Option<TokenStream> {
    let rt = crate::runtime_path();
    let reports_wait =
        |arm: &Arm<'_>| arm.retry_after.is_some() || matches!(arm.rule, Rule::Delegate(_));
    let any_wait = match &plan.shape {
        PlanShape::Enum(arms) => arms.iter().any(reports_wait),
        PlanShape::Struct(arm) => reports_wait(arm),
    };
    any_wait.then(|| {
        answer_per_arm(plan, |arm| match (arm.rule, arm.retry_after) {
            (Rule::Delegate(field), _) => (
                Some(field),
                quote_spanned! {field.ty.span()=>
                    #rt::Classify::retry_after(__buttress_field)
                },
            ),
            (Rule::Class(_), Some(field)) => (
                Some(field),
                quote_spanned! {field.ty.span()=>
                    #rt::RetryAfterField::retry_after_value(__buttress_field)
                },
            ),
            (Rule::Class(_), None) => (None, quote!(#rt::None)),
        })
    })
}

/// A method body: per arm, bind the field `answer` names (if any) to
/// `__buttress_field` and evaluate `answer`'s expression. An enum matches
/// on `self`; a struct destructures it with `let`.
fn answer_per_arm<'a>(
    plan: &'a Plan<'a>,
    answer: impl Fn(&'a Arm<'a>) -> (Option<&'a Field<'a>>, TokenStream),
) -> TokenStream {
    match &plan.shape {
        PlanShape::Struct(arm) => match answer(arm) {
            (Some(field), value) => {
                let pattern = binding(&quote!(Self), field);
                quote!(let #pattern = self; #value)
            }
            (None, value) => value,
        },
        PlanShape::Enum(arms) if arms.is_empty() => quote!(match *self {}),
        PlanShape::Enum(arms) => {
            let arms = arms.iter().map(|arm| {
                let variant = arm.ident;
                let path = quote!(Self::#variant);
                let (pattern, value) = match answer(arm) {
                    (Some(field), value) => (binding(&path, field), value),
                    (None, value) => (quote!(#path { .. }), value),
                };
                quote!(#pattern => #value)
            });
            quote!(match self { #(#arms,)* })
        }
    }
}

/// `Path { member: __buttress_field, .. }`. Braces fit tuple fields too
/// (`{ 0: … }`), so named and tuple fields need no separate code.
fn binding(path: &TokenStream, field: &Field<'_>) -> TokenStream {
    let member = &field.member;
    quote!(#path { #member: __buttress_field, .. })
}

fn error_class(class: Class) -> TokenStream {
    let rt = crate::runtime_path();
    let variant = Ident::new(class.variant_name(), proc_macro2::Span::call_site());
    quote!(#rt::ErrorClass::#variant)
}

/// The item's generics, plus a bound for each delegated or `#[retry_after]`
/// field whose type involves a type parameter. Concrete field types need no
/// bound: a missing impl is reported at the field by the call's span, and
/// leaving them out keeps private field types out of the public impl.
fn with_bounds(plan: &Plan<'_>) -> Generics {
    let rt = crate::runtime_path();
    let mut generics = plan.generics.clone();
    let params: Vec<&Ident> = plan
        .generics
        .type_params()
        .map(|param| &param.ident)
        .collect();
    if params.is_empty() {
        return generics;
    }
    let arms: Vec<&Arm<'_>> = match &plan.shape {
        PlanShape::Enum(arms) => arms.iter().collect(),
        PlanShape::Struct(arm) => vec![arm],
    };
    let mut bounds: Vec<TokenStream> = Vec::new();
    for arm in arms {
        let (field, bound) = match (arm.rule, arm.retry_after) {
            (Rule::Delegate(field), _) => (field, quote!(#rt::Classify)),
            (Rule::Class(_), Some(field)) => (field, quote!(#rt::RetryAfterField)),
            (Rule::Class(_), None) => continue,
        };
        if !mentions(field.ty, &params) {
            continue;
        }
        let ty = field.ty;
        let predicate = quote_spanned!(ty.span()=> #ty: #bound);
        if !bounds
            .iter()
            .any(|seen| seen.to_string() == predicate.to_string())
        {
            bounds.push(predicate);
        }
    }
    if !bounds.is_empty() {
        let where_clause = generics.make_where_clause();
        for bound in bounds {
            where_clause.predicates.push(syn::parse_quote!(#bound));
        }
    }
    generics
}

/// Whether `ty` names one of `params` anywhere (`T`, `Vec<T>`, `T::Error`).
fn mentions(ty: &Type, params: &[&Ident]) -> bool {
    fn walk(tokens: TokenStream, params: &[&Ident]) -> bool {
        tokens.into_iter().any(|token| match token {
            TokenTree::Ident(ident) => params.contains(&&ident),
            TokenTree::Group(group) => walk(group.stream(), params),
            TokenTree::Punct(_) | TokenTree::Literal(_) => false,
        })
    }
    walk(ty.to_token_stream(), params)
}
