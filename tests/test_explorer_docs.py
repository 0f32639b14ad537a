"""The explorer's API page (Swagger UI) renders from local files: no request leaves the machine."""

import httpx
import pytest

from attnlab.viz.explorer import background_server, create_app

pytestmark = [pytest.mark.slow, pytest.mark.browser]


def refuse_everything(text, target, beam):
    raise ValueError("no model here")


@pytest.fixture(scope="module")
def explorer_url():
    with background_server(create_app(refuse_everything, info={"model": "none"})) as url:
        yield url


def open_and_record(browser, url: str, ready: str) -> list[str]:
    """Open ``url``, wait until ``ready`` (a CSS selector) shows and the network is idle; every URL requested."""
    page = browser.new_page()
    requested, errors = [], []
    page.on("request", lambda request: requested.append(request.url))
    page.on("pageerror", lambda error: errors.append(str(error)))
    assert page.goto(url).status == 200
    page.wait_for_selector(ready, timeout=30_000)
    page.wait_for_load_state("networkidle")
    page.close()
    assert errors == [], errors
    return requested


def test_swagger_ui_renders_the_api_and_requests_nothing_outside_loopback(browser, explorer_url):
    requested = open_and_record(browser, explorer_url + "docs",
                                ready=".opblock-summary-path[data-path='/api/attention']")
    assert explorer_url + "openapi.json" in requested
    assert any(address.endswith("swagger-ui-bundle.js") for address in requested)
    outside = [address for address in requested if not address.startswith(explorer_url)]
    assert outside == [], f"/docs left the machine: {outside}"


def test_openapi_schema_is_served_and_the_online_validator_is_off(explorer_url):
    schema = httpx.get(explorer_url + "openapi.json").json()
    assert schema["openapi"].startswith("3.") and "/api/attention" in schema["paths"]
    page = httpx.get(explorer_url + "docs").text
    assert '"validatorUrl": null' in page and "cdn.jsdelivr" not in page
    assert httpx.get(explorer_url + "redoc").status_code == 404  # ReDoc fetches its logo from its CDN


def test_fastapi_default_docs_would_have_left_the_machine():
    """What the explorer replaces points at a CDN, so the loopback checks above can fail."""
    from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html

    assert "https://cdn.jsdelivr.net" in get_swagger_ui_html(openapi_url="/openapi.json", title="t").body.decode()
    assert "https://" in get_redoc_html(openapi_url="/openapi.json", title="t").body.decode()
