//! Wire formats: the FASP-like datagram and its handshake frames ([`fasp`]), and IPv4/UDP
//! framing for captures ([`capture`]).

pub mod fasp;
