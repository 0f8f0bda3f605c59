//! The binary shuts down cleanly and promptly on SIGTERM and on Ctrl-C (SIGINT).

#[tokio::test]
async fn sigterm_and_ctrl_c_stop_the_process_cleanly() {
    agora_testkit::assert_graceful_shutdown(
        env!("CARGO_BIN_EXE_agora-realtime"),
        "AGORA_REALTIME_ADDR",
        "realtime stopped",
    )
    .await;
}
