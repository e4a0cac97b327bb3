//! RFC 6962 / RFC 9162 Merkle tree hashing and inclusion proofs.
//!
//! Leaves and interior nodes are hashed with distinct one-byte prefixes (RFC 6962 §2.1) so a
//! leaf can never be passed off as an interior node. Inclusion proofs are checked with the
//! algorithm of RFC 9162 §2.1.3.2, after checking that the proof has exactly the length the
//! tree shape demands.

use sha2::{Digest, Sha256};

use crate::error::{Result, Step, VerifyError};

/// RFC 6962 leaf hash: SHA-256(0x00 || data).
pub fn leaf_hash(data: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update([0x00]);
    hasher.update(data);
    hasher.finalize().into()
}

/// RFC 6962 interior node hash: SHA-256(0x01 || left || right).
pub fn node_hash(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update([0x01]);
    hasher.update(left);
    hasher.update(right);
    hasher.finalize().into()
}

/// The number of hashes in an inclusion proof for leaf `index` in a tree of `tree_size`
/// leaves (`index < tree_size`).
///
/// Walking up from the leaf, the path first passes through the subtrees where the leaf's
/// index and the last index (`tree_size - 1`) still differ: one sibling per level up to the
/// highest differing bit ("inner" part). Above that, the leaf lies in the tree's left part,
/// and every set bit of the remaining index is a complete left subtree to fold in ("border"
/// part); where the bit is clear the node has no right sibling at that level.
fn inclusion_proof_len(index: u64, tree_size: u64) -> usize {
    let last = tree_size.saturating_sub(1);
    let inner = u64::BITS - (index ^ last).leading_zeros();
    let border = index.checked_shr(inner).unwrap_or(0).count_ones();
    (inner + border) as usize
}

fn fail(reason: String) -> VerifyError {
    VerifyError::new(Step::InclusionProof, reason)
}

/// Verifies an inclusion proof (RFC 9162 §2.1.3.2 algorithm) of `leaf` at `index` in a tree of `tree_size` leaves with root `root`.
///
/// `leaf` is the leaf hash ([`leaf_hash`] of the entry), `proof` the audit path from the leaf
/// upwards. Fails when the index is outside the tree, when the proof does not have the length
/// the tree shape requires, or when the recomputed root differs from `root`.
pub fn verify_inclusion(
    leaf: &[u8; 32],
    index: u64,
    tree_size: u64,
    proof: &[[u8; 32]],
    root: &[u8; 32],
) -> Result<()> {
    if index >= tree_size {
        return Err(fail(format!(
            "leaf index {index} is outside a tree of {tree_size} leaves"
        )));
    }
    let expected = inclusion_proof_len(index, tree_size);
    if proof.len() != expected {
        return Err(fail(format!(
            "the inclusion proof has {} hashes, but leaf {index} of a tree of {tree_size} leaves needs {expected}",
            proof.len()
        )));
    }

    // RFC 9162 §2.1.3.2: `node` tracks the leaf's index and `last` the last index at the
    // current level; both move up one level per step.
    let mut node = index;
    let mut last = tree_size - 1;
    let mut hash = *leaf;
    for sibling in proof {
        if last == 0 {
            // Unreachable after the length check; kept so the loop never walks past the root.
            return Err(fail("the inclusion proof is longer than the path to the root".into()));
        }
        if node & 1 == 1 || node == last {
            hash = node_hash(sibling, &hash);
            if node & 1 == 0 {
                // A right-edge node without a right sibling: climb until it is a right child
                // (or reaches the left edge).
                while node & 1 == 0 && node != 0 {
                    node >>= 1;
                    last >>= 1;
                }
            }
        } else {
            hash = node_hash(&hash, sibling);
        }
        node >>= 1;
        last >>= 1;
    }
    if last != 0 {
        return Err(fail("the inclusion proof is shorter than the path to the root".into()));
    }
    if hash != *root {
        return Err(fail(format!(
            "the inclusion proof leads to root {}, not the expected root {}",
            hex::encode(hash),
            hex::encode(root)
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference Merkle tree hash, straight from the recursive definition in RFC 6962 §2.1.
    fn reference_root(leaves: &[[u8; 32]]) -> [u8; 32] {
        match leaves.len() {
            0 => Sha256::digest([]).into(),
            1 => leaves[0],
            n => {
                let k = split(n);
                node_hash(&reference_root(&leaves[..k]), &reference_root(&leaves[k..]))
            }
        }
    }

    /// Reference audit path PATH(m, D[n]) from RFC 6962 §2.1.1.
    fn reference_path(m: usize, leaves: &[[u8; 32]]) -> Vec<[u8; 32]> {
        let n = leaves.len();
        if n <= 1 {
            return Vec::new();
        }
        let k = split(n);
        if m < k {
            let mut path = reference_path(m, &leaves[..k]);
            path.push(reference_root(&leaves[k..]));
            path
        } else {
            let mut path = reference_path(m - k, &leaves[k..]);
            path.push(reference_root(&leaves[..k]));
            path
        }
    }

    /// The largest power of two strictly smaller than `n` (n > 1).
    fn split(n: usize) -> usize {
        let mut k = 1;
        while k * 2 < n {
            k *= 2;
        }
        k
    }

    fn leaves(n: usize) -> Vec<[u8; 32]> {
        (0..n).map(|i| leaf_hash(format!("leaf {i}").as_bytes())).collect()
    }

    #[test]
    fn hashes_follow_rfc6962() {
        // SHA-256 of the single byte 0x00: the hash of an empty leaf.
        assert_eq!(
            hex::encode(leaf_hash(b"")),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
        let (a, b) = (leaf_hash(b"a"), leaf_hash(b"b"));
        let mut data = vec![0x01];
        data.extend_from_slice(&a);
        data.extend_from_slice(&b);
        let expected: [u8; 32] = Sha256::digest(&data).into();
        assert_eq!(node_hash(&a, &b), expected);
        assert_ne!(node_hash(&a, &b), node_hash(&b, &a));
    }

    #[test]
    fn proof_lengths_match_the_reference_paths() {
        for size in 1..=64usize {
            let tree = leaves(size);
            for index in 0..size {
                assert_eq!(
                    inclusion_proof_len(index as u64, size as u64),
                    reference_path(index, &tree).len(),
                    "index {index} size {size}"
                );
            }
        }
        // Large trees do not overflow.
        assert_eq!(inclusion_proof_len(u64::MAX - 1, u64::MAX), 63);
        assert_eq!(inclusion_proof_len(0, u64::MAX), 64);
        assert_eq!(inclusion_proof_len(1 << 63, (1 << 63) + 1), 1);
    }

    #[test]
    fn every_leaf_of_every_small_tree_verifies() {
        for size in 1..=17usize {
            let tree = leaves(size);
            let root = reference_root(&tree);
            for index in 0..size {
                let proof = reference_path(index, &tree);
                verify_inclusion(&tree[index], index as u64, size as u64, &proof, &root)
                    .unwrap_or_else(|e| panic!("index {index} size {size}: {e}"));
            }
        }
    }

    #[test]
    fn mutated_proofs_fail() {
        for size in 1..=17usize {
            let tree = leaves(size);
            let root = reference_root(&tree);
            for index in 0..size {
                let proof = reference_path(index, &tree);
                let (i, n) = (index as u64, size as u64);
                let check = |leaf: &[u8; 32], i: u64, n: u64, proof: &[[u8; 32]], root: &[u8; 32]| {
                    let e = verify_inclusion(leaf, i, n, proof, root).expect_err("mutation must fail");
                    assert_eq!(e.step, Step::InclusionProof);
                    e
                };

                // Each bit of each proof hash matters (one flipped bit per hash).
                for j in 0..proof.len() {
                    let mut bad = proof.clone();
                    bad[j][j % 32] ^= 1 << (j % 8);
                    check(&tree[index], i, n, &bad, &root);
                }
                // Wrong leaf, wrong root.
                check(&leaf_hash(b"not in the tree"), i, n, &proof, &root);
                let mut bad_root = root;
                bad_root[31] ^= 0x80;
                check(&tree[index], i, n, &proof, &bad_root);
                // A leaf hash given raw as data (second-preimage style) does not verify.
                check(&leaf_hash(&tree[index]), i, n, &proof, &root);
                // Another leaf's position.
                for other in 0..size {
                    if other != index {
                        check(&tree[index], other as u64, n, &proof, &root);
                    }
                }
                // Too short, too long.
                if !proof.is_empty() {
                    let e = check(&tree[index], i, n, &proof[..proof.len() - 1], &root);
                    assert!(e.reason.contains("hashes"), "{e}");
                }
                let mut long = proof.clone();
                long.push(root);
                let e = check(&tree[index], i, n, &long, &root);
                assert!(e.reason.contains("hashes"), "{e}");
                // Index outside the tree.
                let e = check(&tree[index], n, n, &proof, &root);
                assert!(e.reason.contains("outside"), "{e}");
                let e = check(&tree[index], u64::MAX, n, &proof, &root);
                assert!(e.reason.contains("outside"), "{e}");
                // Another tree size: only accepted where the audit path is genuinely the same
                // and then only against that tree's own root.
                for other_size in index + 1..=17 {
                    if other_size == size {
                        continue;
                    }
                    let other_tree = leaves(other_size);
                    let other_root = reference_root(&other_tree);
                    let same_path = reference_path(index, &other_tree) == proof;
                    let result = verify_inclusion(&tree[index], i, other_size as u64, &proof, &other_root);
                    assert_eq!(result.is_ok(), same_path, "index {index} size {size} as {other_size}");
                }
            }
        }
    }

    #[test]
    fn empty_trees_have_no_leaves() {
        let e = verify_inclusion(&leaf_hash(b""), 0, 0, &[], &reference_root(&[])).expect_err("empty tree");
        assert!(e.reason.contains("outside"), "{e}");
    }
}
