"""Headless Chromium from the system's packages, driven through chromedriver (no download)."""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.ui import WebDriverWait

from salesops_pipeline_tests.support.system_packages import (
    chromedriver_binary,
    chromium_binary,
    missing_for,
)


@contextmanager
def chromium(profile_dir: Path) -> Iterator[webdriver.Chrome]:
    missing = missing_for("browser")
    assert missing is None, missing
    # Selenium must not look for a driver on the internet: the system's one is given.
    os.environ["SE_OFFLINE"] = "true"
    options = webdriver.ChromeOptions()
    options.binary_location = chromium_binary()
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1440,900",
        f"--user-data-dir={profile_dir}",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(chromedriver_binary()), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for_text(driver: webdriver.Chrome, text: str, timeout: float = 60.0) -> None:
    WebDriverWait(driver, timeout).until(
        lambda d: text in d.find_element("tag name", "body").text,
        message=f"{text!r} never appeared on {driver.current_url}",
    )


def dismiss_welcome_dialog(driver: webdriver.Chrome) -> None:
    """Close Dagster's first-visit newsletter dialog, if shown, so screenshots show the page."""
    for button in driver.find_elements("xpath", "//button[normalize-space()='Skip']"):
        if button.is_displayed():
            button.click()
