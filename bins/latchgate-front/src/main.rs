fn main() {
    latchgate_core::logging::init(latchgate_core::role::Role::parse("front").expect("role"));
}
