// Headless local ATProto network for end-to-end tests: in-memory PLC + one PDS, no AppView.
// Everything listens on 127.0.0.1 only.
//
// Usage:  node start_pds.js
// Env:    PLC_PORT (default 2582)  PDS_PORT (default 2583)  ATP_DATA (default ./data)
//         ATP_ADMIN_PASSWORD (default "admin-pass")
//         ATP_EXIT_ON_STDIN_EOF=1  -> shut down when stdin closes (parent process died)
//
// Prints exactly one line "READY {json}" on stdout once PLC and PDS accept connections.
// SIGTERM / SIGINT -> network.close(), exit 0.  Startup failure -> "FAILED TO START ..." on stderr, exit 1.
'use strict'
const net = require('node:net')
const path = require('node:path')
const fs = require('node:fs')

// PLC and PDS call `listen(port)`, which would bind every interface. Pin bare-port listens to loopback.
const originalListen = net.Server.prototype.listen
net.Server.prototype.listen = function listenOnLoopback(...args) {
  const first = args[0]
  if (typeof first === 'number' && (args.length === 1 || typeof args[1] === 'function')) {
    args.splice(1, 0, '127.0.0.1')
  } else if (first && typeof first === 'object' && first.port !== undefined && !first.host && !first.path) {
    args[0] = { ...first, host: '127.0.0.1' }
  }
  return originalListen.apply(this, args)
}

let devEnv
try {
  devEnv = require('@atproto/dev-env')
} catch (err) {
  console.error(
    'FAILED TO START: cannot load @atproto/dev-env (' + err.message + ').\n' +
      'Install it with `npm ci --prefix tests/e2e/atp` (or `make test`).',
  )
  process.exit(1)
}

function intFromEnv(name, fallback) {
  const raw = process.env[name]
  if (raw === undefined || raw === '') return fallback
  const value = Number.parseInt(raw, 10)
  if (!Number.isInteger(value) || value <= 0 || value > 65535) {
    throw new Error(`${name} must be a TCP port, got ${JSON.stringify(raw)}`)
  }
  return value
}

function packageVersion(name) {
  try {
    const devEnvDir = path.dirname(require.resolve('@atproto/dev-env/package.json'))
    return require(require.resolve(`${name}/package.json`, { paths: [devEnvDir] })).version
  } catch {
    return null
  }
}

async function main() {
  const startedAt = Date.now()
  const plcPort = intFromEnv('PLC_PORT', 2582)
  const pdsPort = intFromEnv('PDS_PORT', 2583)
  const dataDir = path.resolve(process.env.ATP_DATA || path.join(__dirname, 'data'))
  const adminPassword = process.env.ATP_ADMIN_PASSWORD || 'admin-pass'
  const blobDir = path.join(dataDir, 'blobs')
  fs.mkdirSync(blobDir, { recursive: true })

  const network = await devEnv.TestNetworkNoAppView.create({
    plc: { port: plcPort },
    pds: {
      port: pdsPort,
      // "localhost" is the only hostname for which the PDS uses an http:// public URL.
      hostname: 'localhost',
      didPlcUrl: `http://127.0.0.1:${plcPort}`,
      dataDirectory: dataDir,
      blobstoreDiskLocation: blobDir,
      blobUploadLimit: 100 * 1024 * 1024,
      adminPassword,
      enableDidDocWithSession: true,
    },
  })

  let closing = false
  const shutdown = async (reason) => {
    if (closing) return
    closing = true
    console.log(`shutting down (${reason})`)
    try {
      await network.close()
    } catch (err) {
      console.error('error while closing network', err)
    }
    process.exit(0)
  }
  process.on('SIGTERM', () => shutdown('SIGTERM'))
  process.on('SIGINT', () => shutdown('SIGINT'))
  if (process.env.ATP_EXIT_ON_STDIN_EOF === '1') {
    process.stdin.on('end', () => shutdown('stdin closed'))
    process.stdin.on('error', () => shutdown('stdin error'))
    process.stdin.resume()
  }

  const cfg = network.pds.ctx.cfg
  const info = {
    plc: `http://127.0.0.1:${network.plc.port}`,
    pds: `http://127.0.0.1:${network.pds.port}`,
    pdsPublicUrl: cfg.service.publicUrl,
    firehose: `ws://127.0.0.1:${network.pds.port}/xrpc/com.atproto.sync.subscribeRepos`,
    pdsDid: cfg.service.did,
    pdsVersion: packageVersion('@atproto/pds'),
    devEnvVersion: packageVersion('@atproto/dev-env'),
    adminPassword,
    handleDomains: cfg.identity.serviceHandleDomains,
    dataDirectory: dataDir,
    pid: process.pid,
    startupMs: Date.now() - startedAt,
  }
  console.log('READY ' + JSON.stringify(info))
}

main().catch((err) => {
  console.error('FAILED TO START', err)
  process.exit(1)
})
