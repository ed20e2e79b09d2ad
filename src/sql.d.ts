// Migration files are imported as text (see src/infra/migrations.ts).
declare module '*.sql' {
  const text: string
  export default text
}
