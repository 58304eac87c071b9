//! Shared pieces of the buttress examples.
