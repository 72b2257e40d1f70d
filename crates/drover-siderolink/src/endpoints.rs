//! The endpoint-order quirk of `ProvisionResponse.server_endpoint`.
//!
//! The field was once a single string. Old clients keep the last value they decode, so servers
//! put the primary endpoint **last** on the wire (first and last swapped); new clients swap them
//! back. Both directions are the same swap.

/// Primary-first list -> wire order (primary last).
pub fn to_wire(mut endpoints: Vec<String>) -> Vec<String> {
    swap_ends(&mut endpoints);
    endpoints
}

/// Wire order -> primary-first list, as a current Talos node reads it.
pub fn from_wire(mut endpoints: Vec<String>) -> Vec<String> {
    swap_ends(&mut endpoints);
    endpoints
}

fn swap_ends(v: &mut [String]) {
    if let Some(last) = v.len().checked_sub(1) {
        v.swap(0, last);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn primary_goes_last_on_the_wire_and_comes_back_first() {
        let ours = s(&["primary:1", "b:2", "c:3"]);
        let wire = to_wire(ours.clone());
        assert_eq!(wire, s(&["c:3", "b:2", "primary:1"]));
        assert_eq!(from_wire(wire), ours);
        assert_eq!(to_wire(s(&["only:1"])), s(&["only:1"]));
        assert!(to_wire(vec![]).is_empty());
    }
}
