/**
 * @module cli/bus
 * The bus as the composition root wires it from configuration (BUS=local or sns), and the
 * `quint-cloud bus setup` command that creates the cluster-mode topology for dev and tests.
 */
import { parseArgs } from 'node:util'
import { queueVariable, type Config } from '../config.ts'
import { CONSUMERS, LocalBus, type Bus, type ConsumerName } from '../bus/bus.ts'
import { SnsBus } from '../bus/sns.ts'
import { createSnsClient, createSqsClient, ensureTopology, type AwsTarget } from '../infra/aws.ts'
import type { Sql } from '../infra/db.ts'
import { busBacklog } from '../bus/consume-local.ts'
import type { SqsWorkerInit } from '../bus/pool.ts'
import { sqsBacklog } from '../bus/consume-sqs.ts'

export interface BusWiring {
  bus: Bus
  /** Backlog per consumer for `quint_bus_pending_batches`. */
  backlog: () => Promise<Record<string, number>>
  /** What consumer threads need to read their SQS queue; undefined for the local bus. */
  sqs: SqsWorkerInit | undefined
  /** Releases the AWS clients' sockets. */
  close(): void
}

export function awsTarget(config: Config): AwsTarget {
  if (!config.AWS_REGION) throw new Error('AWS_REGION is not set')
  return { region: config.AWS_REGION, ...(config.AWS_ENDPOINT_URL ? { endpoint: config.AWS_ENDPOINT_URL } : {}) }
}

export function queueUrls(config: Config): Partial<Record<ConsumerName, string>> {
  const out: Partial<Record<ConsumerName, string>> = {}
  for (const c of CONSUMERS) {
    const url = config[queueVariable(c)]
    if (url) out[c] = url
  }
  return out
}

/** Config validation guarantees what BUS=sns needs (region, topic, a queue per local consumer). */
export function wireBus(config: Config, sql: Sql): BusWiring {
  if (config.BUS !== 'sns') {
    return { bus: new LocalBus(), backlog: () => busBacklog(sql), sqs: undefined, close() {} }
  }
  const target = awsTarget(config)
  const sns = createSnsClient(target)
  // For the backlog metric and dead-letter redrives; consumer threads build their own.
  const sqs = createSqsClient(target)
  const queues = queueUrls(config)
  return {
    // The SQS client also redrives dead letters to the queue they came from.
    bus: new SnsBus(sns, config.SNS_TOPIC_ARN!, sqs),
    backlog: () => sqsBacklog(sqs, queues),
    sqs: { target, queueUrls: queues, waitTimeS: config.SQS_WAIT_TIME_S, visibilityTimeoutS: config.SQS_VISIBILITY_TIMEOUT_S },
    close() {
      sns.destroy()
      sqs.destroy()
    },
  }
}

export class BusUsageError extends Error {
  override name = 'BusUsageError'
}

const DEFAULT_MAX_RECEIVE_COUNT = 20

const USAGE = 'usage: quint-cloud bus setup [--prefix NAME] [--max-receive-count N] [--json]'

/**
 * `bus setup`: creates (idempotently) the FIFO topic, the three FIFO queues with their FIFO
 * dead-letter queues, and raw-delivery subscriptions, then prints the variables that point
 * quint-cloud at them (`KEY=value` lines, or one JSON object with --json).
 */
export async function busCommand(config: Config, args: string[]): Promise<number> {
  const [sub, ...rest] = args
  if (sub !== 'setup') throw new BusUsageError(USAGE)
  let values
  try {
    values = parseArgs({
      args: rest,
      options: { prefix: { type: 'string' }, 'max-receive-count': { type: 'string' }, json: { type: 'boolean' } },
      strict: true,
      allowPositionals: false,
    }).values
  } catch (err) {
    throw new BusUsageError(`${(err as Error).message}\n${USAGE}`)
  }
  const prefix = values.prefix ?? 'quint'
  if (!/^[A-Za-z0-9_-]{1,60}$/.test(prefix)) throw new BusUsageError('--prefix: 1–60 letters, digits, - or _')
  // A database outage no longer consumes receives (the consumer stops receiving), so the count
  // only has to outlast handler failures that a deploy fixes; 20 × the visibility timeout (2 min)
  // is about 40 minutes before a failing message is dead-lettered.
  const maxReceiveCount = Number(values['max-receive-count'] ?? DEFAULT_MAX_RECEIVE_COUNT)
  if (!Number.isInteger(maxReceiveCount) || maxReceiveCount < 1 || maxReceiveCount > 1000) {
    throw new BusUsageError('--max-receive-count: an integer from 1 to 1000')
  }
  if (!config.AWS_REGION) throw new BusUsageError('bus setup needs AWS_REGION (and AWS_ENDPOINT_URL for an emulator)')
  const target = awsTarget(config)
  const sns = createSnsClient(target)
  const sqs = createSqsClient(target)
  try {
    const t = await ensureTopology(sns, sqs, {
      prefix,
      queues: CONSUMERS,
      visibilityTimeoutS: config.SQS_VISIBILITY_TIMEOUT_S,
      maxReceiveCount,
    })
    const env: Record<string, string> = { BUS: 'sns', SNS_TOPIC_ARN: t.topicArn }
    for (const c of CONSUMERS) env[queueVariable(c)] = t.queueUrls[c]!
    if (values.json) console.log(JSON.stringify(env))
    else for (const [k, v] of Object.entries(env)) console.log(`${k}=${v}`)
  } finally {
    sns.destroy()
    sqs.destroy()
  }
  return 0
}
