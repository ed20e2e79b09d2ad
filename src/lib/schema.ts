/**
 * @module lib/schema
 * Small TypeBox helpers shared by the request and response schemas of every feature.
 */
import { Type, type TSchema } from '@sinclair/typebox'

/** `T` or `null`: a field that is always present and may be empty. */
export const Nullable = <T extends TSchema>(t: T) => Type.Union([t, Type.Null()])
