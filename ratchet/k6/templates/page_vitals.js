// Web vitals of a target's pages: k6's browser module drives Chromium through each page, a fresh browser
// context per visit (a first view: nothing cached), and reports FCP, LCP, CLS, INP and TTFB per URL, with every
// request the page made. Pages come from RATCHET_PAGES (a JSON list of absolute URLs). RATCHET_EMULATION, when
// set, is the device to be (ratchet/k6/page_profiles.py): its screen, user agent, network and CPU.
import { browser } from 'k6/browser';

const pages = JSON.parse(__ENV.RATCHET_PAGES);
const visits = parseInt(__ENV.RATCHET_VISITS || '3', 10);
const emulation = __ENV.RATCHET_EMULATION ? JSON.parse(__ENV.RATCHET_EMULATION) : null;

export const options = {
  scenarios: {
    pages: {
      executor: 'shared-iterations',
      vus: 1,
      iterations: pages.length * visits,
      maxDuration: __ENV.RATCHET_MAX_DURATION || '120s',
      options: { browser: { type: 'chromium' } },
    },
  },
};

function contextOptions() {
  if (!emulation) {
    return {};
  }
  return {
    viewport: { width: emulation.width, height: emulation.height },
    deviceScaleFactor: emulation.device_scale_factor,
    isMobile: emulation.mobile,
    hasTouch: emulation.mobile,
    userAgent: emulation.user_agent,
  };
}

export default async function () {
  const url = pages[__ITER % pages.length];
  const context = await browser.newContext(contextOptions());
  const page = await context.newPage();
  try {
    if (emulation) {
      await page.throttleNetwork({
        latency: emulation.latency_ms,
        download: emulation.download_bytes_s,
        upload: emulation.upload_bytes_s,
      });
      await page.throttleCPU({ rate: emulation.cpu_slowdown });
    }
    await page.goto(url, { waitUntil: 'load' });
    // An input ends LCP's observation: wait until the browser has recorded an LCP candidate first (at most
    // 5 s, for a page with nothing contentful).
    await page.evaluate(() => new Promise((resolve) => {
      new PerformanceObserver((list) => { if (list.getEntries().length) resolve(true); })
        .observe({ type: 'largest-contentful-paint', buffered: true });
      setTimeout(() => resolve(false), 5000);
    }));
    // An interaction, so that INP has something to measure: a click in the page's corner, which follows no
    // link; then the page is closed, which makes the browser report CLS and INP.
    await page.mouse.click(2, 2);
  } finally {
    await page.close();
    await context.close();
  }
}
