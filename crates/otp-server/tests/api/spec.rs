/// The committed spec must be what the code generates. Regenerate with
/// `cargo run -q -- openapi > openapi/openapi.yaml`.
#[test]
fn committed_openapi_yaml_matches_the_code() {
    let committed = include_str!("../../../../openapi/openapi.yaml");
    let generated = otp_server::api::api_service().spec_yaml();
    assert!(
        committed == generated,
        "openapi/openapi.yaml is stale: run `cargo run -q -- openapi > openapi/openapi.yaml`"
    );
}
