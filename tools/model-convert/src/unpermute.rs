//! Undoing llama.cpp's reordering of the q_proj and k_proj rows.
//!
//! llama.cpp rotates adjacent feature pairs `(2i, 2i+1)` in RoPE; HF Llama rotates halves `(i, i + D/2)`.
//! Its converter therefore interleaves each head's rows: HF row `a * D/2 + b` (a in 0..2) is stored at
//! row `2b + a`. Back to HF, in NumPy terms:
//! `w.reshape(n_head, D/2, 2, in).swapaxes(1, 2).reshape(out, in)`.
//! Only whole rows move, so the same works on packed quantized rows and their scales and biases.

/// Reorders the rows (of `row_len` items each) of a `[n_head * head_dim, row_len]` matrix from
/// llama.cpp's order to HF's. `data.len()` must be a multiple of `n_head * row_len` and the head
/// dimension even; the caller checks both.
pub fn unpermute_rows<T: Copy>(data: &[T], n_head: usize, row_len: usize) -> Vec<T> {
    let head_dim = data.len() / row_len / n_head;
    let half = head_dim / 2;
    let mut out = Vec::with_capacity(data.len());
    for head in 0..n_head {
        for a in 0..2 {
            for b in 0..half {
                let src = (head * head_dim + 2 * b + a) * row_len;
                out.extend_from_slice(&data[src..src + row_len]);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpermute_two_heads_of_dim_four() {
        // Row r holds [10r, 10r + 1]. Within each head, stored rows (0,1,2,3) are HF rows (0,2,1,3).
        let rows: Vec<i32> = (0..8).flat_map(|r| [10 * r, 10 * r + 1]).collect();
        let out = unpermute_rows(&rows, 2, 2);
        let expected_rows = [0, 2, 1, 3, 4, 6, 5, 7];
        let expected: Vec<i32> = expected_rows
            .iter()
            .flat_map(|r| [10 * r, 10 * r + 1])
            .collect();
        assert_eq!(out, expected);
    }

    #[test]
    fn unpermute_head_dim_six_matches_numpy() {
        // np.arange(6).reshape(1, 3, 2, 1).swapaxes(1, 2).reshape(6) == [0, 2, 4, 1, 3, 5]
        assert_eq!(
            unpermute_rows(&[0, 1, 2, 3, 4, 5], 1, 1),
            vec![0, 2, 4, 1, 3, 5]
        );
    }
}
