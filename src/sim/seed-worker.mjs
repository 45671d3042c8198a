// Runs whole-broker schedules in a worker thread for `sim:cluster`, so the
// main thread can stop a seed that never yields (a loop of promise callbacks
// stops virtual time and the event loop with it: only another thread can
// see that and end it). Worker threads do not inherit tsx's loader: register it here.
import { register } from 'tsx/esm/api'
import { parentPort } from 'node:worker_threads'

register()
const { runBrokerSchedule } = await import('./broker-schedule.ts')
parentPort.on('message', async (options) => {
  const trace = options.trace === true ? (line) => void process.stdout.write(`${line}\n`) : undefined
  const { trace: _, ...rest } = options
  const result = await runBrokerSchedule({ ...rest, ...(trace === undefined ? {} : { trace }) })
  parentPort.postMessage(result)
})
parentPort.postMessage('ready')
