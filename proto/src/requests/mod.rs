//! Request and response bodies, one module per family of [`crate::RequestCode`].

pub mod admin;
pub mod function;
pub mod group;
pub mod msg;
pub mod route;
pub mod topic;

#[cfg(test)]
mod tests;
