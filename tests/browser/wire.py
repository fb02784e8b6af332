"""A tap on what the server sent to a page: every event id on the wire, before the client's de-duplication.

The bundled client drops an id it has already delivered, so counting what the
app saw cannot show a server that sent an event twice. This init script wraps
`fetch` (the client takes `globalThis.fetch` when it is created, after init
scripts run): a `/stream` body is passed through a stream that records each
frame's `id` and `event` as the bytes go by (cancel is forwarded, so the
connection closes when the client lets go), and a `/poll` answer is read from a
clone. Records land in `window.__wire` as `{via, id, event}`; every fetch the
page makes is in `window.__requests` as `{path, at, status, error, retryAfter}`.
"""

from __future__ import annotations

from typing import Any

from playwright.sync_api import Page

WIRE_TAP = r"""
(() => {
  const original = globalThis.fetch.bind(globalThis)
  const wire = (globalThis.__wire = [])
  const pathOf = (input) => new URL(typeof input === 'string' ? input : input.url, location.href).pathname
  function record(via, block) {
    let id = null, event = 'message'
    for (const line of block.split('\n')) {
      if (line.startsWith('id:')) id = line.slice(3).replace(/^ /, '')
      else if (line.startsWith('event:')) event = line.slice(6).replace(/^ /, '')
    }
    if (id) wire.push({ via, id, event })
  }
  const requests = (globalThis.__requests = [])
  globalThis.fetch = async (input, init) => {
    const path = pathOf(input)
    const request = { path, at: Date.now(), status: null, error: null }
    requests.push(request)
    let res
    try {
      res = await original(input, init)
    } catch (err) {
      request.error = String(err?.name ?? err)
      throw err
    }
    request.status = res.status
    request.retryAfter = res.headers.get('Retry-After')
    if (path === '/stream' && res.body) {
      const source = res.body.getReader()
      const decoder = new TextDecoder()
      let pending = ''
      const body = new ReadableStream({
        async pull(controller) {
          const { value, done } = await source.read()
          if (done) return controller.close()
          pending += decoder.decode(value, { stream: true }).replace(/\r\n?/g, '\n')
          let end
          while ((end = pending.indexOf('\n\n')) >= 0) {
            record('sse', pending.slice(0, end))
            pending = pending.slice(end + 2)
          }
          controller.enqueue(value)
        },
        cancel(reason) {
          return source.cancel(reason)
        },
      })
      return new Response(body, { status: res.status, statusText: res.statusText, headers: res.headers })
    }
    if (path === '/poll' && res.ok) {
      res.clone().json().then(
        (answer) => { for (const e of answer?.events ?? []) wire.push({ via: 'poll', id: e.id, event: e.type }) },
        () => {},
      )
    }
    return res
  }
})()
"""


def wire_records(page: Page) -> list[dict[str, Any]]:
    return page.evaluate("() => globalThis.__wire ?? null")


def requests(page: Page, path: str | None = None) -> list[dict[str, Any]]:
    """Every fetch of the page (optionally to `path`): when it started (ms), its status or error."""
    found = page.evaluate("() => globalThis.__requests ?? null")
    assert found is not None, "the wire tap is not installed (new_context adds it)"
    return [r for r in found if path is None or r["path"] == path]


def wire_ids(page: Page, event: str = "message.created") -> list[str]:
    """Ids of `event` frames the server sent to this page, in arrival order, duplicates kept."""
    records = wire_records(page)
    assert records is not None, "the wire tap is not installed (new_context adds it)"
    return [r["id"] for r in records if r["event"] == event]
