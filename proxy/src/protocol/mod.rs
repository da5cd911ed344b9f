//! The MySQL client/server protocol, both directions, as synchronous code
//! (<https://dev.mysql.com/doc/dev/mysql-server/latest/PAGE_PROTOCOL.html>), plus the thin
//! async [`conn`] layer that moves packets over a socket.

pub mod auth;
pub mod authflow;
pub mod conn;
pub mod constants;
pub mod handshake;
pub mod packet;
pub mod packets;
pub mod response;
pub mod rewrite;
