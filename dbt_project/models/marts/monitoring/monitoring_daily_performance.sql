{#- Served performance per event day and model, once labels land: the label is the features mart's
    (its meta role label), joined by the event key. Binary: ROC AUC, precision and recall;
    multiclass: accuracy; regression: MAE and RMSE (var ml_task). -#}
{%- set key = ml_mart_column('key') -%}
{%- set label = ml_mart_column('label') -%}
{%- set task = var('ml_task', 'binary') %}

with

served as (
    select * from {{ ref('stg_serving__predictions') }}
),

-- Labels arrive late: a served event is labelled once its landing partition (which carries the
-- label) has been ingested, validated and published into the features mart.
labels as (
    select
        cast({{ adapter.quote(key) }} as varchar) as event_key,
        {{ adapter.quote(label) }} as label
    from {{ ml_features_relation() }}
),

labelled as (
    select
        served.event_date as day,
        served.model_id,
        served.score,
        served.predicted_label,
        {%- if task == 'binary' %}
        cast(labels.label as integer) as is_positive
        {%- elif task == 'multiclass' %}
        cast(labels.label as varchar) = served.predicted_label as is_correct
        {%- else %}
        served.score - cast(labels.label as double) as error
        {%- endif %}
    from served
    inner join labels using (event_key)
),

{%- if task == 'binary' %}

-- ROC AUC as the Mann-Whitney statistic: average ranks, so tied scores count one half.
ranked as (
    select
        *,
        rank() over (partition by day, model_id order by score)
            + (count(*) over (partition by day, model_id, score) - 1) / 2.0 as score_rank
    from labelled
),
{%- endif %}

daily as (
    select
        day,
        model_id,
        count(*) as count_labelled,
        {%- if task == 'binary' %}
        count(*) filter (where is_positive = 1) as count_positive,
        count(*) filter (where is_positive = 1 and predicted_label = '1') as count_true_positive,
        count(*) filter (where is_positive = 0 and predicted_label = '1') as count_false_positive,
        sum(score_rank) filter (where is_positive = 1) as positive_rank_sum
    from ranked
        {%- elif task == 'multiclass' %}
        count(*) filter (where is_correct) as count_correct
    from labelled
        {%- else %}
        avg(abs(error)) as mae,
        sqrt(avg(error * error)) as rmse
    from labelled
        {%- endif %}
    group by all
),

final as (
    select
        day,
        model_id,
        count_labelled,
        {%- if task == 'binary' %}
        count_positive,
        (positive_rank_sum - count_positive * (count_positive + 1) / 2.0)
            / nullif(count_positive * (count_labelled - count_positive), 0) as roc_auc,
        count_true_positive::double / nullif(count_true_positive + count_false_positive, 0) as precision,
        count_true_positive::double / nullif(count_positive, 0) as recall,
        cast(null as double) as accuracy,
        cast(null as double) as mae,
        cast(null as double) as rmse
        {%- elif task == 'multiclass' %}
        cast(null as bigint) as count_positive,
        cast(null as double) as roc_auc,
        cast(null as double) as precision,
        cast(null as double) as recall,
        count_correct::double / count_labelled as accuracy,
        cast(null as double) as mae,
        cast(null as double) as rmse
        {%- else %}
        cast(null as bigint) as count_positive,
        cast(null as double) as roc_auc,
        cast(null as double) as precision,
        cast(null as double) as recall,
        cast(null as double) as accuracy,
        mae,
        rmse
        {%- endif %}
    from daily
)

select * from final
