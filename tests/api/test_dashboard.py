"""The dashboard in a real (headless) browser against the real API, worker and node."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.api.browser import require_browser, start_chromium
from tests.api.stack import API_TOKEN, ApiClient, dataset_payload, objective_payload, sha256_file


def test_dashboard_page_is_self_contained(idle_api: ApiClient):
    response = idle_api.get("/", token=None)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    for state in ("queued", "waiting", "running", "retrying", "succeeded", "failed", "canceled"):
        assert f'data-state="{state}"' in response.text
    assert API_TOKEN not in response.text
    js = idle_api.get("/static/dashboard.js", token=None)
    assert js.headers["Content-Type"].startswith("text/javascript")
    assert "innerHTML" not in js.text  # job data is only ever set as text
    assert idle_api.get("/static/../app.py", token=None).status_code == 404
    assert idle_api.get("/static/nothing.js", token=None).status_code == 404


@pytest.fixture
def browser(tmp_path: Path) -> Iterator:
    require_browser()
    driver = start_chromium(tmp_path / "chromium-profile")
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def _row_state(driver, job_id: str) -> str | None:
    return driver.execute_script(
        "var r = document.querySelector('tr[data-job-id=\"' + arguments[0] + '\"]');"
        "return r ? r.dataset.state : null;",
        job_id,
    )


def _wait(predicate, timeout: float = 30, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_failed_job_is_retried_from_the_dashboard(
    browser, api: ApiClient, tmp_path: Path, variant: int
):
    from selenium.webdriver.common.by import By

    # Given a link job that fails for good: the node knows neither asset yet
    dataset = dataset_payload(tmp_path / "d", variant)
    objective = objective_payload(tmp_path / "o", variant)
    link = api.submit(
        "link_dataset_with_objective",
        {
            "dataset_key": sha256_file(Path(dataset["data_opener"])),
            "objective_key": sha256_file(Path(objective["description"])),
        },
    )
    assert api.wait(link["id"])["state"] == "failed"

    # When the dashboard is opened with the token once in its address
    browser.get(f"{api.url}/?token={API_TOKEN}")

    # Then the token leaves the address bar, and the failed job shows with its error
    assert "token=" not in browser.current_url
    _wait(lambda: _row_state(browser, link["id"]) == "failed", what="the failed row")
    row = browser.find_element(By.CSS_SELECTOR, f'tr[data-job-id="{link["id"]}"]')
    assert "NotFound" in row.find_element(By.CSS_SELECTOR, "td.error").text
    assert "404" in row.find_element(By.CSS_SELECTOR, "td.error").text
    assert row.find_element(By.CSS_SELECTOR, "td.attempts").text == "1"
    assert row.find_element(By.CSS_SELECTOR, "td.operation").text == "link_dataset_with_objective"
    failed_count = browser.find_element(By.CSS_SELECTOR, '.chip[data-state="failed"] .n').text
    assert int(failed_count) >= 1

    # And the state filter shows failed jobs only
    browser.find_element(By.CSS_SELECTOR, '.chip[data-state="failed"]').click()
    _wait(
        lambda: browser.execute_script(
            "var rows = document.querySelectorAll('#job-rows tr[data-job-id]');"
            "return rows.length > 0 && Array.from(rows).every(r => r.dataset.state === 'failed');"
        ),
        what="the failed filter",
    )

    # When the assets now exist and the retry button is pressed
    for payload, operation in ((dataset, "add_dataset"), (objective, "add_objective")):
        assert api.wait(api.submit(operation, payload)["id"])["state"] == "succeeded"
    browser.execute_script("window.notReloaded = true;")
    browser.find_element(By.CSS_SELECTOR, "#state-filter option[value='']").click()
    button = _wait(
        lambda: browser.find_elements(
            By.CSS_SELECTOR, f'tr[data-job-id="{link["id"]}"] button[data-action="retry"]'
        ),
        what="the retry button",
    )[0]
    button.click()

    # Then the job is requeued, runs again, and its row turns succeeded without a reload
    _wait(lambda: _row_state(browser, link["id"]) == "succeeded", what="the succeeded row")
    assert browser.execute_script("return window.notReloaded === true;")
    row = browser.find_element(By.CSS_SELECTOR, f'tr[data-job-id="{link["id"]}"]')
    assert row.find_element(By.CSS_SELECTOR, "td.attempts").text == "2"
    assert row.find_element(By.CSS_SELECTOR, "td.error").text == ""
    assert not row.find_elements(By.CSS_SELECTOR, 'button[data-action="retry"]')
    assert "retry: job" in browser.find_element(By.ID, "notice").text
    browser.save_screenshot(str(tmp_path / "dashboard.png"))


def test_dashboard_asks_for_the_token(browser, api: ApiClient):
    from selenium.webdriver.common.by import By

    # Given no token in this browser
    browser.get(f"{api.url}/")
    form = browser.find_element(By.ID, "token-form")
    _wait(lambda: form.is_displayed(), what="the token form")

    # When a wrong token is entered, the page asks again
    browser.find_element(By.ID, "token-input").send_keys("wrong")
    browser.find_element(By.CSS_SELECTOR, "#token-form button").click()
    _wait(lambda: "refused" in browser.find_element(By.ID, "status").text, what="the refusal")

    # When the right one is entered, jobs load
    browser.find_element(By.ID, "token-input").send_keys(API_TOKEN)
    browser.find_element(By.CSS_SELECTOR, "#token-form button").click()
    _wait(lambda: "updated" in browser.find_element(By.ID, "status").text, what="a refresh")
    assert not form.is_displayed()
    stored = browser.execute_script("return localStorage.getItem('substra-worker-api-token');")
    assert stored == API_TOKEN
