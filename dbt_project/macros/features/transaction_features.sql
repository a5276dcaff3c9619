{#-
  The feature definitions, written once. The features mart calls transaction_features() over the
  staged history; the serving SQL (macros/serving/serving_features.sql) calls it over a request.

  `staged` carries the staged columns plus the user's state (user_state_columns(): the state as
  of just before the transaction, in the warehouse and at serving alike). Fitted
  statistics come in as relations (`stats`, one row; `vocab`, one row per category), so the
  warehouse passes its dbt models and serving passes the copies frozen into the model bundle.
-#}

{% macro categorical_feature_columns() %}
    {{ return(['merchant_category', 'country', 'currency', 'channel', 'device']) }}
{% endmacro %}

{% macro amount_quantiles() %}
    {{ return([10, 20, 30, 40, 50, 60, 70, 80, 90]) }}
{% endmacro %}

{% macro log_amount(amount) -%}
    ln(1 + greatest({{ amount }}, 0))
{%- endmacro %}

{% macro is_new_for_user(value, last_seen_at) -%}
    case
        when {{ value }} is null then -1
        when {{ last_seen_at }} is not null then 0
        else 1
    end
{%- endmacro %}

{% macro transaction_features(staged, stats, vocab, passthrough=['transaction_id', 'event_at']) %}
select
    {%- for column in passthrough %}
    t.{{ column }},
    {%- endfor %}
    least(greatest(t.amount, 0), s.amount_clip_max) as amount_clipped,
    {{ log_amount('t.amount') }} as log_amount,
    ({{ log_amount('t.amount') }} - s.log_amount_mean) / s.log_amount_std as log_amount_zscore,
    {#- Decile of the training window's amounts: 0 below the 10th percentile .. 9 from the 90th. #}
    {%- for q in amount_quantiles() %}
    {{ "(" if loop.first }}cast(t.amount >= s.amount_p{{ q }} as integer){{ " +" if not loop.last else ") as amount_decile," }}
    {%- endfor %}
    cast(hour(t.event_at) as integer) as hour_of_day,
    cast(isodow(t.event_at) as integer) as day_of_week,
    cast(hour(t.event_at) < 6 as integer) as is_night,
    cast(isodow(t.event_at) >= 6 as integer) as is_weekend,
    coalesce(t.state_txn_count_24h, 0) as user_txn_count_24h,
    t.state_amount_sum_30d / nullif(t.state_txn_count_30d, 0) as user_avg_amount_30d,
    t.amount / nullif(t.state_amount_sum_30d / nullif(t.state_txn_count_30d, 0), 0) as amount_to_user_avg_30d,
    epoch(t.event_at) - epoch(t.state_last_event_at) as seconds_since_last_txn,
    {{ is_new_for_user('t.country', 't.state_last_same_country_at') }} as is_new_country_for_user,
    {{ is_new_for_user('t.device', 't.state_last_same_device_at') }} as is_new_device_for_user,
    {%- for column in categorical_feature_columns() %}
    {#- Known category: its frequency rank in the training window; unseen: 0; null: -1. #}
    case
        when t.{{ column }} is null then -1
        else coalesce(v_{{ column }}.category_index, 0)
    end as {{ column }}_index{{ "," if not loop.last }}
    {%- endfor %}
from {{ staged }} as t
cross join {{ stats }} as s
{%- for column in categorical_feature_columns() %}
left join {{ vocab }} as v_{{ column }}
    on v_{{ column }}.feature_name = '{{ column }}'
    and v_{{ column }}.category = t.{{ column }}
{%- endfor %}
{% endmacro %}
