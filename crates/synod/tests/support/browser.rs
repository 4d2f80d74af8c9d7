//! Headless Chromium for the tests of synod's pages (the dashboard, the protocol viewer): load
//! a page, let its scripts run, and read the DOM they rendered.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::path;

/// The browser, or a failure that says how to get it.
pub fn chromium() -> &'static str {
    let found = Command::new("chromium")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "the browser tests need Chromium: `apt-get install chromium` (Debian's package, \
         which .ci/run installs)"
    );
    "chromium"
}

/// The DOM of `url` after its scripts ran for a few seconds, as headless Chromium serializes
/// it.
pub fn dump_dom(browser: &str, url: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--virtual-time-budget=3000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", path(profile.path())))
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting chromium");
    // Read stdout while the browser runs: a large DOM would fill the pipe and stall it.
    let mut stdout = child.stdout.take().expect("piped stdout");
    let reader = std::thread::spawn(move || {
        let mut dom = Vec::new();
        std::io::Read::read_to_end(&mut stdout, &mut dom).map(|_| dom)
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("chromium did not finish loading {url} within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let dom = reader.join().unwrap().expect("reading chromium's output");
    String::from_utf8_lossy(&dom).into_owned()
}

/// The value of `name` on the element whose id is `id` (an attribute after the id), in
/// serialized DOM `dom`.
pub fn attr(dom: &str, id: &str, name: &str) -> Option<String> {
    let start = dom.find(&format!("id=\"{id}\""))?;
    let tag = &dom[start..start + dom[start..].find('>')?];
    let value = &tag[tag.find(&format!("{name}=\""))? + name.len() + 2..];
    Some(value[..value.find('"')?].to_owned())
}

/// The text of the element whose id is `id`, up to its first child tag.
pub fn text(dom: &str, id: &str) -> Option<String> {
    let start = dom.find(&format!("id=\"{id}\""))?;
    let body = &dom[start + dom[start..].find('>')? + 1..];
    Some(body[..body.find('<')?].to_owned())
}
