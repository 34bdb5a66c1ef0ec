"""The dashboard (issue 15) in real headless Chromium against a live `serve` app: sign-in
with a token, tenant isolation, a drill and a restore from the page, read-only tokens.
Screenshots of the overview and a backup page go to test-artifacts/ (kept after the run)."""

from __future__ import annotations

import httpx
import pytest
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from browser import ARTIFACTS, start_browser


@pytest.fixture(scope="module")
def browser():
    drv = start_browser()
    try:
        yield drv
    finally:
        drv.quit()


def wait(drv, timeout: float = 60) -> WebDriverWait:
    # the page re-renders after every action: an element found just before may be replaced
    return WebDriverWait(drv, timeout, ignored_exceptions=(StaleElementReferenceException,))


def sign_in(drv, served, who: str) -> None:
    # clear the token on a page that is not the app, then load the app afresh: loading "/" with
    # the previous test's token would start signing that one in while this one is typed
    drv.get(served.url + "/healthz")
    drv.execute_script("sessionStorage.clear()")
    drv.get(served.url + "/#/overview")
    box = wait(drv).until(EC.visibility_of_element_located((By.ID, "token")))
    box.send_keys(served.tokens[who])
    drv.find_element(By.ID, "signin-button").click()
    wait(drv).until(EC.presence_of_element_located((By.CSS_SELECTOR, "#overview tbody tr")))


def open_backup(drv, served, backup_id: str) -> None:
    drv.get(served.url + "/#/backups")
    drv.refresh()
    link = wait(drv).until(EC.element_to_be_clickable((By.LINK_TEXT, backup_id)))
    link.click()
    wait(drv).until(EC.text_to_be_present_in_element((By.ID, "backup-id"), backup_id))


def result(drv, expect_class: str) -> str:
    """The action's result text once it carries ``expect_class`` (read in the same wait, so a
    re-render between finding the element and reading it is retried, not a stale element)."""
    return wait(drv, 120).until(lambda d: d.find_element(By.CSS_SELECTOR, f"#action-result.{expect_class}").text or False)


def click(drv, element_id: str) -> None:
    """Click the element with this ID, found afresh if a re-render replaced it meanwhile."""
    wait(drv).until(lambda d: d.find_element(By.ID, element_id).click() or True)


def audit_count(served, action: str) -> int:
    return sum(1 for e in served.service.audit.entries() if e.get("action") == action and e.get("outcome") == "ok")


def test_tenant_token_sees_its_tenant_runs_a_drill_and_a_confirmed_restore(served, browser):
    ARTIFACTS.mkdir(exist_ok=True)
    sign_in(browser, served, "write")
    rows = browser.find_elements(By.CSS_SELECTOR, "#overview tbody tr")
    assert rows and {r.get_attribute("data-tenant") for r in rows} == {"acme"}
    assert "beta" not in browser.find_element(By.ID, "page").text
    # the token is in sessionStorage only: never in the address bar
    assert served.tokens["write"] not in browser.current_url
    assert browser.execute_script("return sessionStorage.getItem('dumpsafe-token')") == served.tokens["write"]

    browser.get(served.url + "/#/backups")
    ids = [a.text for a in wait(browser).until(lambda d: d.find_elements(By.CSS_SELECTOR, "a.backup-link"))]
    assert ids and all(i.startswith("acme.") for i in ids)
    bid = ids[0]
    open_backup(browser, served, bid)
    assert browser.find_elements(By.CSS_SELECTOR, "#tables tbody tr") and browser.find_elements(By.CSS_SELECTOR, "#objects tbody tr")

    # a drill from the page: its result appears, and the history gains the drill
    click(browser, "act-drill")
    assert result(browser, "ok").startswith("drill passed")
    wait(browser).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#history tr.event-drill"))
    assert "passed (drill)" in browser.find_element(By.ID, "last-verification").text
    browser.save_screenshot(str(ARTIFACTS / "dashboard-backup.png"))

    # restore without the typed database name: refused, nothing restored
    before = audit_count(served, "restore")
    click(browser, "act-restore")
    assert "to confirm the restore; nothing was restored" in result(browser, "error")
    assert audit_count(served, "restore") == before

    # with it, the restore runs
    browser.find_element(By.ID, "confirm-db").send_keys(served.env.db)
    click(browser, "act-restore")
    assert result(browser, "ok") == f"restored into {served.env.db}"
    assert audit_count(served, "restore") == before + 1

    # a refused action shows the API's sentence: copying to a store of another tenant is not offered,
    # so ask the API directly the way the page does and compare with what the page shows for a 404
    browser.get(served.url + "/#/backup/beta.x.20260101T000000Z.abcdefgh")
    err = wait(browser).until(EC.visibility_of_element_located((By.ID, "page-error"))).text
    api = httpx.get(served.url + "/v1/backups/beta.x.20260101T000000Z.abcdefgh", headers=served.headers("write"))
    assert api.status_code == 404 and err == api.json()["detail"]


def test_admin_sees_every_tenant_and_the_audit_log(served, browser):
    sign_in(browser, served, "admin")
    rows = browser.find_elements(By.CSS_SELECTOR, "#overview tbody tr")
    assert {r.get_attribute("data-tenant") for r in rows} == {"acme", "beta"}
    assert all(r.get_attribute("class").startswith("row-") for r in rows)
    browser.save_screenshot(str(ARTIFACTS / "dashboard-overview.png"))
    browser.find_element(By.ID, "nav-audit").click()
    wait(browser).until(EC.presence_of_element_located((By.CSS_SELECTOR, "#audit tbody tr")))
    # an action the API refuses shows the API's sentence: the backup is deleted behind the page's back
    doomed = served.service.create("beta", uploads=False)[0].id
    open_backup(browser, served, doomed)
    served.service.delete(doomed)
    click(browser, "act-verify")
    shown = result(browser, "error")
    api = httpx.post(served.url + f"/v1/backups/{doomed}/verify", json={}, headers=served.headers("admin"))
    assert api.status_code == 404 and shown == api.json()["detail"]
    browser.get(served.url + "/#/charts")
    wait(browser).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".charts svg")) >= 6)
    browser.save_screenshot(str(ARTIFACTS / "dashboard-charts.png"))


def test_read_only_token_sees_no_action_and_the_api_refuses_anyway(served, browser):
    sign_in(browser, served, "read")
    assert not browser.find_element(By.ID, "nav-audit").is_displayed()
    bid = served.service.list("acme")[0].id
    open_backup(browser, served, bid)
    assert browser.find_elements(By.ID, "no-actions")
    assert browser.find_elements(By.CSS_SELECTOR, "#actions button") == []
    for method, path, body in [("POST", "/verify", {"drill": True}), ("POST", "/restore", {}), ("POST", "/pin", None),
                               ("DELETE", "", None)]:
        r = httpx.request(method, served.url + f"/v1/backups/{bid}{path}", json=body, headers=served.headers("read"), timeout=60)
        assert r.status_code == 403 and "lacks the backups:" in r.json()["detail"], (path, r.text)


def test_page_is_served_without_data_and_with_a_strict_policy(served):
    r = httpx.get(served.url + "/")
    assert r.status_code == 200 and "script-src 'self'" in r.headers["content-security-policy"]
    assert "acme" not in r.text and "<script src=\"/ui/app.js\"" in r.text
    assert httpx.get(served.url + "/ui/app.js").headers["content-type"].startswith("text/javascript")
    assert httpx.get(served.url + "/ui/../pyproject.toml").status_code == 404
    assert httpx.get(served.url + "/v1/whoami").status_code == 401
