import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createLineSplitter, createParser, splitField } from '../../static/chatgenius-realtime.js'

const bytes = (...values) => new Uint8Array(values)
const utf8 = (text) => new TextEncoder().encode(text)

/** Feeds every chunk and keeps the outputs in order, in a compact form. */
function parse(chunks) {
  const parser = createParser()
  const out = []
  for (const chunk of chunks) {
    for (const item of parser.feed(chunk)) {
      if (item.kind === 'event') out.push({ type: item.event.type, data: item.event.data, id: item.event.id, lastEventId: item.event.lastEventId })
      else if (item.kind === 'retry') out.push({ retry: item.ms })
      else out.push({ comment: item.text })
    }
  }
  return out
}

const ev = (data, { type = 'message', id, lastEventId = id ?? '' } = {}) => ({ type, data, id, lastEventId })

// Each row: name, chunks as the network might cut them, expected outputs.
const CASES = [
  ['LF line endings', ['data: a\n\n'], [ev('a')]],
  ['CRLF line endings', ['data: a\r\n\r\n'], [ev('a')]],
  ['lone CR line endings', ['data: a\r\r'], [ev('a')]],
  ['mixed line endings in one stream', ['data: a\r\n\rdata: b\n\r\n'], [ev('a'), ev('b')]],
  ['CRLF split between chunks is one line ending', ['data: a\r', '\n\r', '\n'], [ev('a')]],
  ['CR at chunk end then a new line is two endings', ['data: a\r', '\rdata: b\n\n'], [ev('a'), ev('b')]],
  ['an empty chunk after CR keeps the pending LF skip', ['data: a\r', '', '\n\n'], [ev('a')]],
  ['a field split across chunks', ['da', 'ta: hel', 'lo\n', '\n'], [ev('hello')]],
  ['every byte its own chunk', [...'id: 7\nevent: x\ndata: y\n\n'], [ev('y', { type: 'x', id: '7' })]],
  ['multi-line data joined with LF', ['data: a\ndata: b\ndata:\ndata: c\n\n'], [ev('a\nb\n\nc')]],
  ['only one leading space is stripped', ['data:  two\n\n'], [ev(' two')]],
  ['no space after the colon', ['data:x\n\n'], [ev('x')]],
  ['a field name alone means an empty value', ['data\n\n'], [ev('')]],
  ['an empty data field dispatches an empty event', ['data:\n\n'], [ev('')]],
  ['colons after the first belong to the value', ['data: {"a":"b:c"}\n\n'], [ev('{"a":"b:c"}')]],
  ['event type is kept; default is message', ['event: user.typing\ndata: 1\n\ndata: 2\n\n'], [ev('1', { type: 'user.typing' }), ev('2')]],
  ['comments are reported, not dispatched', [': hb\n\n'], [{ comment: ' hb' }]],
  ['an event without data is not dispatched', ['event: x\nid: 4\n\ndata: y\n\n'], [ev('y', { lastEventId: '4' })]],
  ['unknown fields are ignored', ['foo: bar\nData: no\ndata: yes\n\n'], [ev('yes')]],
  ['id persists as lastEventId but marks only its own event', ['id: 1\ndata: a\n\ndata: b\n\n'], [ev('a', { id: '1' }), ev('b', { lastEventId: '1' })]],
  ['an empty id resets the last event id', ['id: 1\ndata: a\n\nid\ndata: b\n\n'], [ev('a', { id: '1' }), ev('b', { id: '', lastEventId: '' })]],
  ['an id containing NUL is ignored', ['id: 1\ndata: a\n\nid: 2\0x\ndata: b\n\n'], [ev('a', { id: '1' }), ev('b', { lastEventId: '1' })]],
  ['retry with digits is reported', ['retry: 3000\n\n'], [{ retry: 3000 }]],
  ['retry with anything but digits is ignored', ['retry: 3s\nretry: -1\nretry: 1.5\nretry:\n\n'], []],
  ['an incomplete event at the end is discarded', ['data: a\n\ndata: b\n'], [ev('a')]],
  ['an incomplete last line is discarded', ['data: a\n\ndata: b'], [ev('a')]],
  ['a leading BOM is stripped', ['\ufeffdata: a\n\n'], [ev('a')]],
  ['only one leading BOM is stripped', ['\ufeff\ufeffdata: a\n\n'], []],
  ['a BOM later in the stream is data', ['data: a\n\n\ufeffdata: b\n\n'], [ev('a')]],
  ['a BOM split across byte chunks is stripped', [bytes(0xef), bytes(0xbb, 0xbf), utf8('data: a\n\n')], [ev('a')]],
  ['a multi-byte character split across chunks', [utf8('data: h').slice(), bytes(0xc3), bytes(0xa9, 0x0a, 0x0a)], [ev('hé')]],
  ['a four-byte emoji split in three', [utf8('data: '), bytes(0xf0, 0x9f), bytes(0x98), bytes(0x80, 0x0a, 0x0a)], [ev('😀')]],
  ['invalid UTF-8 becomes U+FFFD, not an exception', [bytes(0x64, 0x61, 0x74, 0x61, 0x3a, 0xff, 0x0a, 0x0a)], [ev('\ufffd')]],
  [
    'the server frames of the contract',
    ['retry: 2500\n\nevent: system.connected\ndata: {"connection_id":"c1"}\n\nid: 5-0\nevent: message.created\ndata: {"id":"5-0"}\n\n: hb\n\n'],
    [{ retry: 2500 }, ev('{"connection_id":"c1"}', { type: 'system.connected' }), ev('{"id":"5-0"}', { type: 'message.created', id: '5-0' }), { comment: ' hb' }],
  ],
]

for (const [name, chunks, expected] of CASES) {
  test(`parser: ${name}`, () => {
    assert.deepEqual(parse(chunks), expected)
  })
}

test('parser: the same stream parses the same however it is chunked', () => {
  const wire = '\ufeffretry: 10\r\nid: a\r\nevent: t\r\ndata: 1\r\ndata: 2\r\n\r\n: c\rdata: x\r\rid: b\ndata: é😀\n\n'
  const whole = parse([utf8(wire)])
  const encoded = utf8(wire)
  for (let size = 1; size <= 7; size++) {
    const chunks = []
    for (let i = 0; i < encoded.length; i += size) chunks.push(encoded.slice(i, i + size))
    assert.deepEqual(parse(chunks), whole, `chunk size ${size}`)
  }
  assert.equal(whole.filter((o) => o.data !== undefined).length, 3)
})

test('parser: lastEventId is readable between chunks', () => {
  const parser = createParser()
  parser.feed('id: 9\ndata: a\n\n')
  assert.equal(parser.lastEventId, '9')
})

const SPLIT_CASES = [
  ['data: x', ['data', 'x']],
  ['data:x', ['data', 'x']],
  ['data:  x', ['data', ' x']],
  ['data', ['data', '']],
  ['data:', ['data', '']],
  ['a:b:c', ['a', 'b:c']],
]
for (const [line, expected] of SPLIT_CASES) {
  test(`splitField(${JSON.stringify(line)})`, () => assert.deepEqual(splitField(line), expected))
}

test('line splitter keeps a partial line until its end arrives', () => {
  const splitter = createLineSplitter()
  assert.deepEqual(splitter.push('ab'), [])
  assert.deepEqual(splitter.push('c\nd'), ['abc'])
  assert.deepEqual(splitter.push('\r'), ['d'])
  assert.deepEqual(splitter.push('\n'), [])
  assert.deepEqual(splitter.push('\n'), [''])
})
