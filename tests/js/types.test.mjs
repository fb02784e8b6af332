import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import * as client from '../../static/chatgenius-realtime.js'

const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8'))
const dts = readFileSync(new URL('../../static/chatgenius-realtime.d.ts', import.meta.url), 'utf8')

test('the declarations name exactly the values the module exports', () => {
  const declared = [...dts.matchAll(/^export (?:function|const) (\w+)/gm)].map((m) => m[1])
  assert.deepEqual([...new Set(declared)].sort(), Object.keys(client).sort())
})

test('package.json points at the module and its declarations', async () => {
  assert.equal(pkg.type, 'module')
  assert.equal(pkg.exports['.'].default, './static/chatgenius-realtime.js')
  assert.equal(pkg.exports['.'].types, './static/chatgenius-realtime.d.ts')
  assert.ok(pkg.license)
  assert.deepEqual(pkg.files.sort(), ['static/chatgenius-realtime.d.ts', 'static/chatgenius-realtime.js'])
  const self = await import(pkg.name) // the package's own name resolves through `exports`
  assert.equal(self.createRealtime, client.createRealtime)
})
