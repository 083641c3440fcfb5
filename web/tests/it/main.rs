//! Integration tests of the web crate: one binary driving the real accounts API stack
//! (`api::routes` over a real `MetaStore` in a temporary directory) in-process.

mod accounts;
mod bodies;
mod keys;
mod members;
mod pages;
mod password;
mod roles;
mod searched;
mod support;
mod tenancy;
mod throttle;
