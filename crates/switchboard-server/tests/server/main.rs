//! Integration tests of `switchboard serve`: every behaviour and every bad input, against a
//! real server on 127.0.0.1 with real WebSocket and HTTP clients.

mod common;
mod gateway;
mod http_api;
mod interop;
mod limits;
mod phoenix;
mod realtimex;
mod scaling;
mod webhooks;
mod websocket;
