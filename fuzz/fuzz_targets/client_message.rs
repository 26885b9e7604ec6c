//! A client's WebSocket message, from its bytes: what `net::session` does
//! with a text frame (`serde_json::from_str::<ClientMsg>`), then for an `op`
//! what the document does with it (`TextOp::parse` with the server's default
//! limits, apply to a text of its base length, transform), and for
//! selections `fits` and `transform`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tandem::protocol::ClientMsg;

fuzz_target!(|data: &[u8]| {
    // The server refuses larger frames before parsing them.
    if data.len() > tandem::config::MAX_MESSAGE_BYTES {
        return;
    }
    match std::str::from_utf8(data) {
        Ok(text) => tandem_fuzz::check_client_text(text),
        Err(_) => {
            // actix-ws refuses a text frame that is not UTF-8 and the session
            // refuses binary frames, so such bytes never reach the parser as
            // text. Neither the byte parser nor the text of a lossy decoding
            // may panic.
            let _ = serde_json::from_slice::<ClientMsg>(data);
            tandem_fuzz::check_client_text(&String::from_utf8_lossy(data));
        }
    }
});
