{#-
  The feature definitions, written once. The features mart calls transaction_features() over the
  staged history; the serving SQL (macros/serving/serving_features.sql) calls it over one request.
  Fitted statistics come in as relations (`stats`, one row; `vocab`, one row per category) so the
  warehouse passes its dbt models and serving passes the copies frozen into the model bundle.
-#}

{% macro categorical_feature_columns() %}
    {{ return(['merchant_category', 'country', 'currency', 'channel', 'device']) }}
{% endmacro %}

{% macro log_amount(amount) -%}
    ln(1 + greatest({{ amount }}, 0))
{%- endmacro %}

{% macro transaction_features(staged, stats, vocab, passthrough=['transaction_id', 'event_at']) %}
select
    {%- for column in passthrough %}
    t.{{ column }},
    {%- endfor %}
    least(greatest(t.amount, 0), s.amount_clip_max) as amount_clipped,
    {{ log_amount('t.amount') }} as log_amount,
    ({{ log_amount('t.amount') }} - s.log_amount_mean) / s.log_amount_std as log_amount_zscore,
    cast(hour(t.event_at) as integer) as hour_of_day,
    cast(isodow(t.event_at) as integer) as day_of_week,
    cast(hour(t.event_at) < 6 as integer) as is_night,
    cast(isodow(t.event_at) >= 6 as integer) as is_weekend,
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
