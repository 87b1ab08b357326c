//! The client against a real `switchboard serve` on 127.0.0.1: every behaviour and fault.

mod auth;
mod basics;
mod common;
mod echo;
mod extras;
mod faults;
mod gateway;
mod interop;
mod lossless;
mod phoenix;
mod presence;
mod publisher;
mod realtimex;
