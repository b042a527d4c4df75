fn main() {
    latchgate_core::logging::init(latchgate_core::role::Role::parse("signer").expect("role"));
}
