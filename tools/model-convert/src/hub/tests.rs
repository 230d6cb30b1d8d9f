//! The Hub client against a fake Hub on 127.0.0.1: the tiny Qwen3 fixture served in the Hub's URL
//! layout (`/api/models/{repo}/revision/{rev}`, `/{repo}/resolve/{rev}/{file}` with its ETag,
//! X-Linked-Etag, X-Linked-Size, X-Repo-Commit and Range answers), cutting a download off, lying
//! about a hash, or gating the repository.

use std::{
    io::{BufRead, BufReader, Write},
    net::{TcpListener, TcpStream},
    sync::{Arc, Mutex},
};

use super::*;

const REPO: &str = "tiny/qwen3-tiny";
const COMMIT: &str = "c0ffee0000000000000000000000000000000001";
const FIXTURE_FILES: [&str; 5] = [
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
];

#[derive(Default, Clone)]
struct Behaviour {
    /// Send only half of the first full download of model.safetensors, then hang up.
    cut_once: bool,
    /// Announce a sha256 that is not the file's.
    wrong_sha256: bool,
    /// Gate the files behind this token (the repository's info stays public, as on the Hub).
    token: Option<String>,
}

struct FakeHub {
    endpoint: String,
    /// `METHOD PATH [range] [authorization]`, one per request.
    log: Arc<Mutex<Vec<String>>>,
}

impl FakeHub {
    fn start(behaviour: Behaviour) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let endpoint = format!("http://{}", listener.local_addr().expect("address"));
        let log = Arc::new(Mutex::new(vec![]));
        let files: Vec<(String, Vec<u8>)> = FIXTURE_FILES
            .iter()
            .map(|f| {
                let path = crate::workspace_root()
                    .join("models/fixtures/qwen3-tiny")
                    .join(f);
                (f.to_string(), fs::read(&path).expect("fixture file"))
            })
            .collect();
        let server_log = log.clone();
        std::thread::spawn(move || {
            let mut cut_done = false;
            for stream in listener.incoming().flatten() {
                serve(stream, &files, &behaviour, &mut cut_done, &server_log);
            }
        });
        FakeHub { endpoint, log }
    }

    fn settings(&self, cache: &Path, token: Option<&str>) -> HubSettings {
        HubSettings {
            endpoint: self.endpoint.clone(),
            cache_dir: cache.to_path_buf(),
            token: token.map(str::to_string),
        }
    }

    fn requests(&self) -> Vec<String> {
        self.log.lock().expect("log").clone()
    }
}

fn serve(
    stream: TcpStream,
    files: &[(String, Vec<u8>)],
    behaviour: &Behaviour,
    cut_done: &mut bool,
    log: &Mutex<Vec<String>>,
) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let (mut range, mut authorization) = (None, None);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.trim_end().split_once(':') {
            match name.to_ascii_lowercase().as_str() {
                "range" => range = Some(value.trim().to_string()),
                "authorization" => authorization = Some(value.trim().to_string()),
                _ => {}
            }
        }
    }
    let mut words = request_line.split_whitespace();
    let (method, path) = (
        words.next().unwrap_or_default().to_string(),
        words.next().unwrap_or_default().to_string(),
    );
    log.lock().expect("log").push(
        [
            method.clone(),
            path.clone(),
            range.clone().unwrap_or_default(),
            authorization.clone().unwrap_or_default(),
        ]
        .join(" ")
        .trim_end()
        .to_string(),
    );
    let mut out = stream;
    let respond = |out: &mut TcpStream, status: &str, headers: &[(&str, String)], body: &[u8]| {
        let mut head = format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
            body.len()
        );
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        let _ = out.write_all(head.as_bytes());
        let _ = out.write_all(body);
    };

    if path == format!("/api/models/{REPO}/revision/main") {
        let siblings: Vec<_> = files
            .iter()
            .map(|(name, _)| serde_json::json!({ "rfilename": name }))
            .collect();
        let body = serde_json::json!({ "id": REPO, "sha": COMMIT, "siblings": siblings });
        return respond(&mut out, "200 OK", &[], body.to_string().as_bytes());
    }
    let Some(rest) = path.strip_prefix(&format!("/{REPO}/resolve/")) else {
        return respond(&mut out, "404 Not Found", &[], b"Repository not found");
    };
    let file_name = rest.split_once('/').map(|(_, f)| f).unwrap_or_default();
    let Some((_, content)) = files.iter().find(|(name, _)| name == file_name) else {
        return respond(&mut out, "404 Not Found", &[], b"Entry not found");
    };
    if let Some(token) = &behaviour.token {
        match authorization {
            None => {
                return respond(
                    &mut out,
                    "401 Unauthorized",
                    &[],
                    b"Access to model is restricted",
                )
            }
            Some(given) if given != format!("Bearer {token}") => {
                return respond(
                    &mut out,
                    "403 Forbidden",
                    &[],
                    b"Access to model is restricted",
                )
            }
            Some(_) => {}
        }
    }
    let lfs = file_name.ends_with(".safetensors");
    let etag = if lfs {
        let real = hex(&Sha256::digest(content));
        if behaviour.wrong_sha256 {
            "0".repeat(64)
        } else {
            real
        }
    } else {
        // Small files: a git blob hash (40 hex digits) that hf-hub only uses as a name.
        format!("{:040x}", file_name.len())
    };
    let size = content.len();
    let mut headers = vec![
        ("X-Repo-Commit", COMMIT.to_string()),
        ("ETag", format!("\"{etag}\"")),
    ];
    if lfs {
        headers.push(("X-Linked-Etag", format!("\"{etag}\"")));
        headers.push(("X-Linked-Size", size.to_string()));
    }
    let Some(range) = range else {
        return respond(&mut out, "200 OK", &headers, content);
    };
    let (start, end) = range
        .strip_prefix("bytes=")
        .and_then(|r| r.split_once('-'))
        .map(|(a, b)| {
            let start: usize = a.parse().unwrap_or(0);
            let end = b.parse::<usize>().map_or(size - 1, |e| e.min(size - 1));
            (start, end)
        })
        .unwrap_or((0, size - 1));
    headers.push(("Content-Range", format!("bytes {start}-{end}/{size}")));
    let body = &content[start..=end];
    if lfs && behaviour.cut_once && !*cut_done && body.len() > 1 {
        *cut_done = true;
        let head = format!(
            "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {start}-{end}/{size}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let _ = out.write_all(head.as_bytes());
        let _ = out.write_all(&body[..body.len() / 2]);
        let _ = out.flush();
        // Dropping the stream hangs up half-way through the body.
        return;
    }
    respond(&mut out, "206 Partial Content", &headers, body);
}

use sha2::{Digest, Sha256};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn fixture(file: &str) -> Vec<u8> {
    fs::read(
        crate::workspace_root()
            .join("models/fixtures/qwen3-tiny")
            .join(file),
    )
    .expect("fixture file")
}

#[test]
fn fetch_resumes_a_cut_download_checks_it_and_installs_the_model() {
    let hub = FakeHub::start(Behaviour {
        cut_once: true,
        ..Behaviour::default()
    });
    let work = tempfile::tempdir().expect("tempdir");
    let (cache, destination) = (work.path().join("hf"), work.path().join("models/tiny"));
    fs::create_dir_all(destination.parent().expect("parent")).expect("mkdir");

    let fetched = fetch(&hub.settings(&cache, None), REPO, "main", &destination, 1)
        .expect("fetch succeeds after resuming");
    assert_eq!(fetched.commit, COMMIT);
    for file in FIXTURE_FILES {
        assert_eq!(
            fs::read(destination.join(file)).expect("installed"),
            fixture(file),
            "{file} differs from the file served"
        );
    }
    let requests = hub.requests();
    let half = fixture("model.safetensors").len() / 2;
    assert!(
        requests
            .iter()
            .any(|r| r.contains("model.safetensors bytes=")
                && r.ends_with(&format!("bytes={half}-"))),
        "no request resumed model.safetensors at byte {half}: {requests:#?}"
    );
    assert!(
        crate::output_dir::is_complete(&destination, &marker(REPO, COMMIT, 1)),
        "the marker names the repository and commit"
    );

    // A second install of the same commit reads the cache: only the repository's info is asked.
    let again = work.path().join("models/again");
    fetch(&hub.settings(&cache, None), REPO, "main", &again, 1).expect("second fetch");
    let downloads = hub.requests().len() - requests.len();
    assert_eq!(downloads, 1, "{:#?}", &hub.requests()[requests.len()..]);
}

#[test]
fn a_wrong_sha256_is_an_error_and_the_download_is_deleted() {
    let hub = FakeHub::start(Behaviour {
        wrong_sha256: true,
        ..Behaviour::default()
    });
    let work = tempfile::tempdir().expect("tempdir");
    let (cache, destination) = (work.path().join("hf"), work.path().join("tiny"));
    let error = fetch(&hub.settings(&cache, None), REPO, "main", &destination, 1)
        .expect_err("the hash differs")
        .to_string();
    let real = hex(&Sha256::digest(fixture("model.safetensors")));
    assert!(
        error.contains("model.safetensors is corrupt")
            && error.contains(&real)
            && error.contains(&"0".repeat(64))
            && error.contains("run the command again"),
        "{error}"
    );
    assert!(!destination.exists(), "nothing is installed");
    let blob = cache
        .join("models--tiny--qwen3-tiny/blobs")
        .join("0".repeat(64));
    assert!(!blob.exists(), "the corrupt blob is deleted");
}

#[test]
fn a_gated_repository_says_how_to_get_access() {
    let hub = FakeHub::start(Behaviour {
        token: Some("hf_right".into()),
        ..Behaviour::default()
    });
    let work = tempfile::tempdir().expect("tempdir");
    let (cache, destination) = (work.path().join("hf"), work.path().join("tiny"));

    let error = fetch(&hub.settings(&cache, None), REPO, "main", &destination, 1)
        .expect_err("no token")
        .to_string();
    assert!(
        error.contains("HTTP 401")
            && error.contains(&format!("Accept its license on {}/{REPO}", hub.endpoint))
            && error.contains("set HF_TOKEN="),
        "{error}"
    );
    let error = fetch(
        &hub.settings(&cache, Some("hf_wrong")),
        REPO,
        "main",
        &destination,
        1,
    )
    .expect_err("a token without access")
    .to_string();
    assert!(
        error.contains("no access to tiny/qwen3-tiny (HTTP 403") && error.contains("license"),
        "{error}"
    );
    assert!(!destination.exists());

    fetch(
        &hub.settings(&cache, Some("hf_right")),
        REPO,
        "main",
        &destination,
        1,
    )
    .expect("the right token");
    assert!(hub
        .requests()
        .iter()
        .any(|r| r.ends_with("Bearer hf_right")));
}

#[test]
fn an_unknown_repository_is_a_404_that_names_it() {
    let hub = FakeHub::start(Behaviour::default());
    let work = tempfile::tempdir().expect("tempdir");
    let error = fetch(
        &hub.settings(work.path(), None),
        "tiny/nothing",
        "main",
        &work.path().join("x"),
        1,
    )
    .expect_err("404")
    .to_string();
    assert!(
        error.contains("tiny/nothing") && error.contains("HTTP 404"),
        "{error}"
    );
}

#[test]
fn the_files_chosen_are_the_model_directory() {
    let files = files_to_download(
        "a/b",
        &[
            "README.md",
            "config.json",
            "tokenizer.json",
            "model.safetensors",
            "onnx/model.onnx",
        ],
    )
    .expect("a model");
    assert_eq!(
        files,
        ["config.json", "tokenizer.json", "model.safetensors"]
    );

    let sharded = files_to_download(
        "a/b",
        &[
            "config.json",
            "tokenizer.json",
            "model.safetensors.index.json",
            "model-00001-of-00002.safetensors",
            "model-00002-of-00002.safetensors",
        ],
    )
    .expect("a sharded model");
    assert_eq!(sharded.len(), 5);

    let error = files_to_download("a/b", &["config.json", "tokenizer.json", "b-Q4_0.gguf"])
        .expect_err("no safetensors")
        .to_string();
    assert!(
        error.contains("a/b has no safetensors weights")
            && error.contains("--model-path FILE.gguf"),
        "{error}"
    );
    assert!(check_repo_id("Qwen/Qwen3-0.6B").is_ok());
    assert!(check_repo_id("../x").is_err() && check_repo_id("qwen3").is_err());
}
