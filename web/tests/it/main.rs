//! Integration tests of the web crate: one binary driving the real accounts API stack
//! (`api::routes` over a real `MetaStore` in a temporary directory) in-process.

mod accounts;
mod bodies;
mod keys;
mod pages;
mod roles;
mod support;
mod tenancy;
mod throttle;
