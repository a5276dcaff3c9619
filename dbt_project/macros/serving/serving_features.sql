{#-
  The whole row-level path for serving: raw request fields -> staging cleanup -> the user's
  latest state snapshot -> features. Compiled once per model bundle with
  `dbt compile --inline "{{ serving_features() }}"`; the relations named here are what the
  serving runtime registers: the request as an Arrow table with a `__row_id` column, and the
  fitted tables frozen into the bundle under their dbt model names.
-#}
{% macro serving_features(
    request='request',
    stats='fitted_transaction_stats',
    vocab='fitted_category_vocab',
    snapshot='fitted_user_state_snapshot'
) %}
with staged as (
    select
        __row_id,
        {{ bank_transaction_columns() }}
    from {{ request }}
),

staged_with_state as (
    select
        staged.*,
        {{ user_state_columns('snapshot') }}
    from staged
    left join {{ snapshot }} as snapshot
        on snapshot.user_id = staged.user_id
),

features as (
    {{ transaction_features('staged_with_state', stats, vocab, passthrough=['__row_id', 'transaction_id', 'event_at']) }}
)

select * from features order by __row_id
{% endmacro %}
