"""The explorer's API pages make no request outside the machine; its OpenAPI schema stays available."""

import httpx
import pytest

from attnlab.viz.explorer import background_server, create_app

pytestmark = [pytest.mark.slow, pytest.mark.browser]


def refuse_everything(text, target, beam):
    raise ValueError("no model here")


def test_docs_page_in_chromium_requests_nothing_outside_loopback(browser):
    app = create_app(refuse_everything, info={"model": "none"})
    with background_server(app) as url:
        page = browser.new_page()
        requested = []
        page.on("request", lambda request: requested.append(request.url))
        response = page.goto(url + "docs")
        page.wait_for_load_state("networkidle")
        assert response.status == 200
        assert page.locator("code", has_text="POST /api/attention").count() == 1
        page.click("a[href='/openapi.json']")
        page.wait_for_load_state("networkidle")
        page.close()
        assert requested[0] == url + "docs" and url + "openapi.json" in requested
        outside = [address for address in requested if not address.startswith(url)]
        assert outside == [], f"the docs page left the machine: {outside}"

        schema = httpx.get(url + "openapi.json").json()
        assert schema["openapi"].startswith("3.") and "/api/attention" in schema["paths"]
        assert httpx.get(url + "redoc").status_code == 404  # ReDoc loads its script from a CDN: off


def test_fastapi_swagger_page_would_have_left_the_machine():
    """The default /docs that the explorer replaces points at a CDN (so the test above can fail)."""
    from fastapi.openapi.docs import get_swagger_ui_html

    default = get_swagger_ui_html(openapi_url="/openapi.json", title="t").body.decode()
    assert "https://" in default
