//! The operator pages in a real browser: headless Chromium (Debian's chromium and
//! chromedriver) driven over WebDriver against a real node. Every page it visits is saved as
//! a screenshot under `target/screenshots/pages/`.

mod common;

use std::sync::Arc;

use common::{Node, TOKEN, peer};
use ostracon_tests::browser::{Browser, Locator};
use ostracon_tests::prosody::{Prosody, available};
use ostracon_tests::{TempDir, free_port};
use serde_json::json;

/// Signs in at the node at `url` with the admin token, through the sign-in form.
async fn sign_in(browser: &Browser, url: &str) {
    browser.open(&format!("{url}/")).await;
    browser.fill("token", TOKEN).await;
    browser.submit("/sign-in").await;
    browser.wait_for_text("Recent decisions").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_operators_make_their_nodes_buddies_from_the_buddies_page_on_real_prosody() {
    if !available() {
        return;
    }
    let Some(browser) = Browser::start("buddies").await else { return };
    let components = common::component_specs(&["alpha.test", "beta.test"]);
    let prosody = Prosody::start(&["alpha.test", "beta.test"], &components);
    let dir = Arc::new(TempDir::new("pages-buddies"));
    let mut alpha = Node::start("alpha.test", &prosody, Arc::clone(&dir)).await;
    let mut beta = Node::start("beta.test", &prosody, Arc::clone(&dir)).await;
    alpha.wait_online().await;
    beta.wait_online().await;

    // Alpha's operator asks beta from the page.
    sign_in(&browser, &alpha.url).await;
    browser.open(&format!("{}/buddies", alpha.url)).await;
    browser.fill("jid", "incidents.beta.test").await;
    browser.submit("/buddies").await;
    browser.wait_for_text("requested").await;
    browser.screenshot("request-sent").await;

    // Beta's operator sees the request with the fingerprint alpha publishes, and approves it.
    beta.wait_for("alpha's request with keys at beta", "/v1/peers", |p| {
        peer(p, "incidents.alpha.test").is_some_and(|a| a["state"] == "pending" && a["fingerprint"].is_string())
    })
    .await;
    let published = alpha.get("/.well-known/ostracon").await;
    let fingerprint = published["keys"][0]["fingerprint"].as_str().unwrap().to_owned();
    sign_in(&browser, &beta.url).await;
    browser.open(&format!("{}/buddies", beta.url)).await;
    let page = browser.wait_for_text("Asking to be our buddy").await;
    assert!(page.contains("incidents.alpha.test") && page.contains(&fingerprint), "{page}");
    browser.screenshot("request-pending").await;
    // Its page fetches what alpha's web address publishes and finds the presented key there;
    // beta's own address is another node's, and the page says so.
    browser.open(&format!("{}/buddies/incidents.alpha.test", beta.url)).await;
    browser.fill("published", &alpha.url).await;
    browser.submit("/buddies/incidents.alpha.test").await;
    let compared = browser.wait_for_text("publishes").await;
    assert!(compared.contains("The key it signs with now is the one"), "{compared}");
    assert!(compared.contains(&fingerprint), "{compared}");
    browser.screenshot("buddy-keys-compared").await;
    browser.fill("published", &beta.url).await;
    browser.submit("/buddies/incidents.alpha.test").await;
    let wrong = browser.wait_for_text("is the node").await;
    assert!(wrong.contains("not incidents.alpha.test"), "{wrong}");
    browser.open(&format!("{}/buddies", beta.url)).await;
    browser.wait_for_text("Asking to be our buddy").await;
    let auto_apply = browser
        .client
        .find(Locator::Css("form[action=\"/buddies/incidents.alpha.test/approve\"] option[value=auto-apply]"))
        .await
        .unwrap();
    auto_apply.click().await.unwrap();
    browser.submit("/buddies/incidents.alpha.test/approve").await;
    browser.wait_for_text("No requests wait for you.").await;
    let approved = browser.main_text().await;
    assert!(approved.contains("buddy") && approved.contains("auto-apply"), "{approved}");
    browser.screenshot("buddy-approved").await;

    // Both sides are buddies now.
    alpha
        .wait_for("beta as a buddy at alpha", "/v1/peers", |p| {
            peer(p, "incidents.beta.test").is_some_and(|b| b["state"] == "buddy")
        })
        .await;
    let at_beta = beta.get("/v1/peers").await;
    assert_eq!(peer(&at_beta, "incidents.alpha.test").unwrap()["trust"], "auto-apply");

    // A request from alpha reaches beta's dashboard; beta's operator responds from the page
    // with the address only beta knows. Beta lists it; at alpha, which trusts beta with
    // `accept` (weight 0.5), the signed response arrives as evidence short of a quorum.
    let (status, created) = alpha
        .call(
            reqwest::Method::POST,
            "/v1/incidents",
            Some(json!({ "offenders": ["flooder@beta.test"], "category": "muc-abuse", "severity": "high" })),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let request_id = created["id"].as_str().unwrap().to_owned();
    let (status, body) = alpha
        .call(
            reqwest::Method::POST,
            &format!("/v1/incidents/{request_id}/request"),
            Some(json!({ "to": "incidents.beta.test" })),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    beta.wait_for("the request at beta", "/v1/incidents?verb=request", |l| {
        l["incidents"].as_array().is_some_and(|a| !a.is_empty())
    })
    .await;
    browser.open(&format!("{}/dashboard", beta.url)).await;
    let dashboard = browser.wait_for_text("Requests from other servers").await;
    assert!(dashboard.contains(&request_id), "{dashboard}");
    browser.screenshot("dashboard-with-request").await;
    browser.open(&format!("{}/incidents/{request_id}", beta.url)).await;
    browser.wait_for_text("Respond to this request").await;
    browser.fill("offenders", "203.0.113.66").await;
    browser.fill("note", "account disabled; its address listed").await;
    browser.submit(&format!("/incidents/{request_id}/respond")).await;
    let response = browser.wait_for_text("203.0.113.66").await;
    assert!(response.contains("account disabled"), "{response}");
    browser.screenshot("response-sent").await;
    // Beta's page for alpha: its standing, the weight of its reports, and its request among them.
    browser.open(&format!("{}/buddies/incidents.alpha.test", beta.url)).await;
    let buddy = browser.wait_for_text("Its recent reports").await;
    assert!(buddy.contains(&request_id) && buddy.contains("toward the listing threshold"), "{buddy}");
    browser.screenshot("buddy").await;
    assert_eq!(beta.get("/v1/lookup/ip/203.0.113.66").await["listed"], true);
    alpha
        .wait_for("the response's evidence at alpha", "/v1/lookup/ip/203.0.113.66", |l| {
            l["awaiting_quorum"]["reasons"][0]["reporter"] == "incidents.beta.test"
        })
        .await;
    // Alpha's page for its request says to whom it went and that it arrived. (Cookies are
    // per host, not per port: signing in to beta replaced alpha's session.)
    sign_in(&browser, &alpha.url).await;
    browser.open(&format!("{}/incidents/{request_id}", alpha.url)).await;
    browser.wait_for_text("Deliveries").await;
    let delivery = browser.main_text().await;
    let row = delivery.lines().find(|line| line.contains("incidents.beta.test") && line.contains("request"));
    assert!(row.is_some_and(|row| row.contains("delivered") && !row.contains("not yet")), "{delivery}");
    browser.screenshot("request-delivered").await;

    browser.close().await;
    alpha.stop().await;
    beta.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_signs_in_submits_reads_and_retracts_an_incident_and_the_public_looks_it_up() {
    let Some(browser) = Browser::start("pages").await else { return };
    let dir = Arc::new(TempDir::new("pages"));
    let listen = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut node = Node::start_http_only("ops.example", listen, Arc::clone(&dir)).await;
    node.wait_for("the node", "/healthz", |h| h["database"] == "ok").await;
    let url = node.url.clone();
    // A listing for the public lookup, made through the API.
    let (status, _) = node
        .call(
            reqwest::Method::POST,
            "/v1/incidents",
            Some(json!({ "offenders": ["198.51.100.23"], "category": "spam", "description": "registration flood" })),
        )
        .await;
    assert_eq!(status, 201);

    // A wrong token is refused, on the sign-in page, beside the field.
    browser.open(&format!("{url}/")).await;
    browser.screenshot("sign-in").await;
    browser.fill("token", "ost_not-a-token-of-this-node").await;
    browser.submit("/sign-in").await;
    browser.wait_for_text("unknown or revoked token").await;
    let field = browser.client.find(Locator::Css("#token")).await.unwrap();
    assert_eq!(field.attr("aria-invalid").await.unwrap().as_deref(), Some("true"));
    browser.screenshot("sign-in-refused").await;

    // The right one opens the dashboard.
    browser.fill("token", TOKEN).await;
    browser.submit("/sign-in").await;
    let dashboard = browser.wait_for_text("Recent decisions").await;
    assert!(dashboard.contains("Database") && dashboard.contains("ok"), "{dashboard}");
    // The plots draw today's one accepted incident and the one address it listed.
    assert_eq!(
        browser.attr("figure.plot:nth-of-type(1) svg", "aria-label").await.unwrap(),
        "1 incident received over 30 days"
    );
    assert!(
        browser
            .attr("figure.plot:nth-of-type(2) svg", "aria-label")
            .await
            .unwrap()
            .ends_with("now ip 1, cidr 0, jid 0, domain 0")
    );
    assert!(browser.client.find(Locator::Css("figure.plot rect.decision-accepted")).await.is_ok());
    browser.screenshot("dashboard").await;

    // Submit from the form: a bad offender is refused beside its field, the good ones listed.
    browser.open(&format!("{url}/incidents/new")).await;
    browser.fill("offenders", "192.0.2.7\nnot an address at all!").await;
    let category = browser.client.find(Locator::Css("#category option[value=brute-force]")).await.unwrap();
    category.click().await.unwrap();
    browser.fill("description", "password spraying from a botnet").await;
    browser.submit("/incidents").await;
    browser.wait_for_text("offenders[1]").await;
    assert!(browser.client.find(Locator::Css("#offenders-error")).await.is_ok(), "the error sits beside the field");
    browser.screenshot("incident-form-error").await;
    browser.fill("offenders", "192.0.2.7\n203.0.113.0/24").await;
    browser.submit("/incidents").await;
    let detail = browser.wait_for_text("Retract this incident").await;
    assert!(detail.contains("192.0.2.7") && detail.contains("203.0.113.0/24"), "{detail}");
    assert!(!detail.contains("\"value\""), "offenders show as text, not JSON: {detail}");
    assert_eq!(browser.attr("a[href=\"/lookup?q=203.0.113.0%2F24\"]", "class").await.as_deref(), Some("mono"));
    assert!(detail.contains("brute-force") && detail.contains("password spraying"), "{detail}");
    browser.screenshot("incident-detail").await;
    let incident_url = browser.client.current_url().await.unwrap().to_string();
    let id = incident_url.rsplit('/').next().unwrap().to_owned();
    let lookup = node.get("/v1/lookup/ip/192.0.2.7").await;
    assert_eq!(lookup["listed"], true, "{lookup}");

    // The list, filtered, shows it.
    browser.open(&format!("{url}/incidents?category=brute-force")).await;
    let list = browser.wait_for_text(&id).await;
    assert!(!list.contains("registration flood"), "the filter keeps only brute-force: {list}");
    browser.screenshot("incidents").await;

    // A form posted without the session's CSRF token is refused, and changes nothing.
    let cookies = browser.client.get_all_cookies().await.unwrap();
    let session = cookies.iter().find(|c| c.name() == "ostracon_session").expect("the session cookie");
    assert_eq!(session.http_only(), Some(true));
    assert_eq!(format!("{:?}", session.same_site()), "Some(Strict)");
    let forged = reqwest::Client::new()
        .post(format!("{url}/incidents/{id}/retract"))
        .header("cookie", format!("ostracon_session={}", session.value()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status().as_u16(), 403);
    let forged = reqwest::Client::new()
        .post(format!("{url}/incidents"))
        .header("cookie", format!("ostracon_session={}", session.value()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("csrf=guessed&offenders=192.0.2.66&category=spam")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status().as_u16(), 403);
    assert_eq!(node.get("/v1/lookup/ip/192.0.2.66").await["listed"], false);
    assert_eq!(node.get("/v1/lookup/ip/192.0.2.7").await["listed"], true);

    // Retract from the detail page: the incident is retracted and its listing gone.
    browser.open(&incident_url).await;
    browser.submit(&format!("/incidents/{id}/retract")).await;
    let retracted = browser.wait_for_text("retracted").await;
    assert!(!retracted.contains("Retract this incident"), "{retracted}");
    browser.screenshot("incident-retracted").await;
    node.wait_for("the delisting", "/v1/lookup/ip/192.0.2.7", |l| l["listed"] == false).await;

    // Reputation: an admin fixes a server's score from its page; a bad score is refused
    // beside its field.
    browser.open(&format!("{url}/reputation/spam.example")).await;
    browser.wait_for_text("Parts of the score").await;
    browser.fill("score", "minus eighty").await;
    browser.submit("/reputation/spam.example/override").await;
    browser.wait_for_text("score is an integer").await;
    assert!(browser.client.find(Locator::Css("#score-error")).await.is_ok());
    browser.fill("score", "-80").await;
    browser.fill("note", "registration spam seen by our users").await;
    browser.submit("/reputation/spam.example/override").await;
    let fixed = browser.wait_for_text("fixed by the operator").await;
    assert!(fixed.contains("Fixed at -80") && fixed.contains("registration spam seen by our users"), "{fixed}");
    browser.screenshot("reputation-detail").await;
    let score = node.get("/v1/reputation/spam.example").await;
    assert_eq!((score["score"].as_i64(), score["overridden"].as_bool()), (Some(-80), Some(true)), "{score}");
    browser.open(&format!("{url}/reputation")).await;
    browser.wait_for_text("Reputation of remote servers").await;
    browser.screenshot("reputation").await;

    // Signed out, the lookup page explains a listing: who reported it, the weights, the
    // threshold, the log leaf.
    browser.open(&format!("{url}/dashboard")).await;
    browser.submit("/sign-out").await;
    browser.wait_for_text("Sign in").await;
    browser.open(&format!("{url}/dashboard")).await;
    browser.wait_for_text("Sign in with one of this node's tokens").await;
    browser.open(&format!("{url}/lookup?q=198.51.100.23")).await;
    let public = browser.wait_for_text("Listed: 198.51.100.23").await;
    assert!(public.contains("this node's operator") || public.contains("a quorum of reports"), "{public}");
    assert!(public.contains("leaf"), "{public}");
    browser.screenshot("lookup").await;
    browser.open(&format!("{url}/lookup?q=192.0.2.200")).await;
    browser.wait_for_text("Not listed: 192.0.2.200").await;

    // The audit page: this browser checks the checkpoint's signature and a leaf's inclusion
    // proof itself (WebCrypto); a key that is not the node's fails the check.
    browser.open(&format!("{url}/audit")).await;
    browser.wait_for_text("Latest checkpoint").await;
    let verify = browser.client.find(Locator::Css("button[data-leaf=\"1\"]")).await.unwrap();
    verify.click().await.unwrap();
    let verdict = browser.wait_for_text("Verified in this browser: leaf 1 is in the log").await;
    assert!(verdict.contains("signed by ops.example"), "{verdict}");
    browser.screenshot("audit-verified").await;
    browser.fill("key", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=").await;
    browser.client.find(Locator::Css("button[data-leaf=\"1\"]")).await.unwrap().click().await.unwrap();
    browser.wait_for_text("Not verified: no signature line is from this key").await;
    browser.screenshot("audit-wrong-key").await;

    // Sign-in attacks, over plain HTTP: a post without the form's cookie (as another site
    // would send) opens no session even with the right token; an overlong token is refused
    // unread; a flood of attempts from one address is cut off, the right token included.
    let sign_in = |body: String| {
        reqwest::Client::new()
            .post(format!("{url}/sign-in"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("cookie", "ostracon_sign_in=chosen-by-the-attacker")
            .body(body)
            .send()
    };
    let forged = sign_in(format!("token={TOKEN}&csrf=another-value")).await.unwrap();
    assert_eq!(forged.status().as_u16(), 403);
    assert!(
        forged.headers().get_all("set-cookie").iter().all(|c| !c.to_str().unwrap().starts_with("ostracon_session=")),
        "no session for a forged sign-in"
    );
    let overlong = sign_in(format!("token={}&csrf=chosen-by-the-attacker", "x".repeat(300))).await.unwrap();
    assert_eq!(overlong.status().as_u16(), 401);
    let mut limited = None;
    for attempt in 0..20 {
        let answer = sign_in("token=ost_guess&csrf=chosen-by-the-attacker".to_owned()).await.unwrap();
        if answer.status().as_u16() == 429 {
            limited = Some((attempt, answer.headers().contains_key("retry-after")));
            break;
        }
        assert_eq!(answer.status().as_u16(), 401);
    }
    assert_eq!(limited.map(|(_, retry_after)| retry_after), Some(true), "the flood is cut off with Retry-After");
    // While limited, even the right token waits. (The bucket refills one attempt every few
    // seconds; on a loaded machine one may come back between two requests, so the flood
    // empties it again before each try.)
    let mut waited = false;
    for _ in 0..5 {
        while sign_in("token=ost_guess&csrf=chosen-by-the-attacker".to_owned()).await.unwrap().status() != 429 {}
        let right = sign_in(format!("token={TOKEN}&csrf=chosen-by-the-attacker")).await.unwrap();
        if right.status().as_u16() == 429 {
            waited = true;
            break;
        }
    }
    assert!(waited, "while limited, even the right token waits");

    browser.close().await;
    node.stop().await;
}
