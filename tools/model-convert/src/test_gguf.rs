//! Test support: writing small GGUF files, including wrong ones.

/// Writes small GGUF files, with the freedom to write wrong ones.
pub struct Builder {
    pub version: u32,
    kvs: Vec<u8>,
    pub n_kv: u64,
    infos: Vec<u8>,
    pub n_tensors: u64,
    data: Vec<u8>,
    alignment: usize,
}

pub fn string(s: &str) -> Vec<u8> {
    [&(s.len() as u64).to_le_bytes()[..], s.as_bytes()].concat()
}

impl Builder {
    pub fn new() -> Self {
        Builder {
            version: 3,
            kvs: vec![],
            n_kv: 0,
            infos: vec![],
            n_tensors: 0,
            data: vec![],
            alignment: 32,
        }
    }

    pub fn kv(mut self, key: &str, type_id: u32, value: &[u8]) -> Self {
        self.kvs.extend(string(key));
        self.kvs.extend(type_id.to_le_bytes());
        self.kvs.extend(value);
        self.n_kv += 1;
        self
    }

    pub fn u32(self, key: &str, value: u32) -> Self {
        self.kv(key, 4, &value.to_le_bytes())
    }

    pub fn f32(self, key: &str, value: f32) -> Self {
        self.kv(key, 6, &value.to_le_bytes())
    }

    pub fn str(self, key: &str, value: &str) -> Self {
        self.kv(key, 8, &string(value))
    }

    pub fn alignment(mut self, alignment: u32) -> Self {
        self.alignment = alignment as usize;
        self.kv("general.alignment", 4, &alignment.to_le_bytes())
    }

    /// A tensor whose data is appended to the data section (ggml dims order).
    pub fn tensor(mut self, name: &str, dims: &[u64], type_id: u32, data: &[u8]) -> Self {
        let offset = self.data.len() as u64;
        self.data.extend(data);
        self.data
            .resize(self.data.len().next_multiple_of(self.alignment), 0);
        self.tensor_at(name, dims, type_id, offset)
    }

    pub fn tensor_at(mut self, name: &str, dims: &[u64], type_id: u32, offset: u64) -> Self {
        self.infos.extend(string(name));
        self.infos.extend((dims.len() as u32).to_le_bytes());
        dims.iter().for_each(|d| self.infos.extend(d.to_le_bytes()));
        self.infos.extend(type_id.to_le_bytes());
        self.infos.extend(offset.to_le_bytes());
        self.n_tensors += 1;
        self
    }

    pub fn build(&self) -> Vec<u8> {
        let mut out = b"GGUF".to_vec();
        out.extend(self.version.to_le_bytes());
        out.extend(self.n_tensors.to_le_bytes());
        out.extend(self.n_kv.to_le_bytes());
        out.extend(&self.kvs);
        out.extend(&self.infos);
        out.resize(out.len().next_multiple_of(self.alignment), 0);
        out.extend(&self.data);
        out
    }
}

pub fn array(item_type: u32, items: &[Vec<u8>]) -> Vec<u8> {
    let mut out = item_type.to_le_bytes().to_vec();
    out.extend((items.len() as u64).to_le_bytes());
    items.iter().for_each(|i| out.extend(i));
    out
}
