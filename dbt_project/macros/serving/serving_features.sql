{#-
  The whole row-level path for serving: raw request fields -> staging cleanup -> the user's state
  as of just before each record -> features. Compiled once per model bundle with
  `dbt compile --inline "{{ serving_features() }}"`. The relations named here are what the serving
  runtime registers: the request as an Arrow table with a `__row_id` column; `events`, the
  request's users' events from the online store plus the request's own rows (with their
  `__row_id`; stored events have none), in the raw fields' shape; and the fitted tables frozen
  into the bundle under their dbt model names.
-#}
{% macro serving_features(
    request='request',
    events='entity_events__user',
    stats='fitted_transaction_stats',
    vocab='fitted_category_vocab'
) %}
with staged as (
    select
        __row_id,
        {{ bank_transaction_columns() }}
    from {{ request }}
),

user_events as (
    select
        __row_id,
        {{ bank_transaction_columns() }}
    from {{ events }}
),

user_state as (
    {{ user_state('user_events', '__row_id') }}
),

staged_with_state as (
    select
        staged.*,
        {{ user_state_columns('user_state') }}
    from staged
    left join user_state
        on user_state.state_key = staged.__row_id
),

features as (
    {{ transaction_features('staged_with_state', stats, vocab, passthrough=['__row_id', 'transaction_id', 'event_at']) }}
)

select * from features order by __row_id
{% endmacro %}
